"""The thread policy: how many intra-op threads torch uses, chosen in one place for every
command (``--threads``, ``train.threads``).

``auto`` (the default) counts the cores this process may run on (its CPU affinity, capped by
``OMP_NUM_THREADS`` when that is set) and subtracts the cores other processes keep busy:
``threads = max(1, usable - round(busy))``, where a core counts as busy from half a core's
use on. On two cores with one CPU-bound process beside it that is one thread, which
``mbiapo bench`` measured 2.4-2.9x faster than two threads there (two threads wait on each
other whenever the other process holds one core); on an idle machine it is every usable
core.

Busy is read from ``/proc/stat``: the time the usable cores spent busy, minus this process's
own CPU time, over wall time. The first choice samples ``SAMPLE_S`` seconds; training and
fitting loops call ``refresh()``, which re-chooses from the time since the last reading once
every ``RECHECK_S`` seconds (no sampling wait), so a run adapts when a neighbour starts or
ends. Where ``/proc/stat`` is missing (not Linux), auto uses every usable core.

Torch's thread count is per process, so the policy is too: ``apply`` sets it and
``refresh`` keeps it; ``current()`` says what was chosen and why.
"""

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mbiapo.errors import MbiapoError

AUTO = "auto"
BUSY_CORE = 0.5  # another process's use of a core, in cores, from which the core is busy
SAMPLE_S = 0.25  # how long the first choice watches the cores
RECHECK_S = 10.0  # how often refresh() re-chooses
STAT = Path("/proc/stat")


def parse(setting: str | int) -> str | int:
    """``"auto"`` or a whole number >= 1 (as given on the command line or in a config)."""
    text = str(setting).strip().lower()
    if text == AUTO:
        return AUTO
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise MbiapoError(f"threads must be 'auto' or a whole number >= 1, got '{setting}'")


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity; every CPU where that is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _omp_cap() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


class CpuMeter:
    """Other processes' use of the given CPUs, in cores, between two readings."""

    def __init__(self, cpus: list[int], stat: Path = STAT):
        self.cpus, self.stat = {f"cpu{i}" for i in cpus}, stat
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        """(wall s, busy s of the CPUs, this process's CPU s), or None without /proc/stat."""
        try:
            lines = self.stat.read_text().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            fields = line.split()
            if fields and fields[0] in self.cpus:
                # user nice system idle iowait irq softirq steal (guest is inside user)
                values = [int(v) for v in fields[1:9]]
                busy += sum(values) - values[3] - values[4]
        return time.perf_counter(), busy / self.tick, time.process_time()

    def others(self) -> float | None:
        """Cores the other processes used since the last reading (then a new reading)."""
        now = self._read()
        if now is None or self.last is None:
            return None
        (w0, b0, p0), (w1, b1, p1) = self.last, now
        self.last = now
        if w1 - w0 <= 0:
            return None
        return max(0.0, ((b1 - b0) - (p1 - p0)) / (w1 - w0))


def choose(usable: int, busy: float | None) -> int:
    """The auto rule: every usable core but those other processes keep busy, at least one."""
    if busy is None:
        return usable
    return max(1, usable - math.floor(busy + 1 - BUSY_CORE))


@dataclass
class Choice:
    """What the policy chose: ``threads``, from ``setting``; for auto, the ``usable`` cores
    and the ``busy`` cores it saw (None where it could not measure)."""

    threads: int
    setting: str | int
    usable: int
    busy: float | None = None

    def describe(self) -> str:
        if self.setting != AUTO:
            return f"{self.threads} (set)"
        seen = "busy unknown" if self.busy is None else f"{self.busy:.1f} busy"
        return f"{self.threads} (auto: {self.usable} usable, {seen})"


class ThreadPolicy:
    """A thread setting applied to torch, and (auto) kept up to date by ``refresh``."""

    def __init__(self, setting: str | int = AUTO, cpus: list[int] | None = None,
                 meter: CpuMeter | None = None):
        self.setting = parse(setting)
        cpus = usable_cpus() if cpus is None else cpus
        cap = _omp_cap()
        self.usable = min(len(cpus), cap) if cap else len(cpus)
        self.meter = meter if meter is not None else (
            CpuMeter(cpus) if self.setting == AUTO else None)
        self.checked = time.perf_counter()
        self.choice: Choice | None = None

    def apply(self, sample_s: float | None = None) -> Choice:
        """Choose (auto: after watching the cores ``sample_s`` seconds, default
        ``SAMPLE_S``; nothing to watch with one usable core) and set torch's thread count."""
        if self.setting != AUTO:
            return self._set(Choice(self.setting, self.setting, self.usable))
        if self.usable == 1:
            return self._set(Choice(1, AUTO, 1))
        self.meter.others()  # a fresh reading: what came before is not this sample's
        time.sleep(SAMPLE_S if sample_s is None else sample_s)
        return self._measure()

    def refresh(self) -> int:
        """Re-choose from the time since the last reading, at most every ``RECHECK_S``
        seconds (auto only); returns the thread count in force. Call it from the thread
        that runs torch's work: the count is set per calling thread under OpenMP."""
        if self.setting == AUTO and self.usable > 1 \
                and time.perf_counter() - self.checked >= RECHECK_S:
            self._measure()
        return self.choice.threads

    def _measure(self) -> Choice:
        busy = self.meter.others()
        return self._set(Choice(choose(self.usable, busy), AUTO, self.usable, busy))

    def _set(self, choice: Choice) -> Choice:
        self.checked = time.perf_counter()
        if self.choice is None or choice.threads != torch.get_num_threads():
            torch.set_num_threads(choice.threads)
        self.choice = choice
        return choice


_POLICY: ThreadPolicy | None = None


def apply(setting: str | int = AUTO) -> Choice:
    """Make ``setting`` this process's thread policy and apply it (what every command does
    first; call it in a notebook for the same behaviour)."""
    global _POLICY
    _POLICY = ThreadPolicy(setting)
    return _POLICY.apply()


def use(setting: str | int) -> Choice:
    """``apply(setting)``, unless this process's policy already has that setting (then its
    last choice stands: no new sample)."""
    if _POLICY is not None and _POLICY.setting == parse(setting):
        return _POLICY.choice
    return apply(setting)


def refresh() -> int:
    """``ThreadPolicy.refresh`` of this process's policy; torch's count where none is set."""
    return _POLICY.refresh() if _POLICY is not None else torch.get_num_threads()


def current() -> Choice | None:
    """What this process's policy chose last (None before ``apply``)."""
    return None if _POLICY is None else _POLICY.choice
