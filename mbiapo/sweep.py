"""Multi-seed sweeps on Ray. Every combination of a grid of config overrides and a seed is one
``mbiapo train`` process, run as a Ray task in its own run folder ``OUT/<values>_s<seed>``.

Sweep file (YAML; paths are relative to it)::

    base: base.yaml                       # optional --config file for every run
    overrides: [train.eval_every=2500]    # optional key=value for every run
    grid:                                 # every combination of these values
      env.id: [InvertedPendulum-v5, InvertedDoublePendulum-v5]
      planner.name: [direct, iterative]
    seeds: [0, 1, 2]                      # train.seed
    steps: 10000                          # optional train.steps
    peers: [sb3-sac]                      # optional: peers run beside (mbiapo/peer.py)
    cases:                                # optional: more overrides where a run matches
      - match: {env.id: HalfCheetah-v5, planner.name: direct}
        overrides: [value.hidden=512]

A peer runs once per combination of the grid's keys outside ``planner`` (the envs, say) and
seed, with the same overrides, budget and evaluation (``mbiapo peer``); it is skipped, with
one line saying so, where stable-baselines3 is not installed.

Re-running a sweep skips the runs whose checkpoint reached ``train.steps``, resumes those with
a checkpoint short of it (``train --resume``) and starts the rest. A run folder holding another
config stops the sweep before anything starts. Ray is imported only by ``run_sweep``.
"""

import ctypes
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mbiapo.config import compose, differences, from_container, load_yaml
from mbiapo.errors import MbiapoError

RAY_MISSING = "mbiapo sweep needs Ray: pip install 'mbiapo[ray]' (or pip install ray)"
SWEEP_KEYS = {"base", "overrides", "grid", "seeds", "steps", "peers", "cases"}
PEERS = ("sb3-sac",)


@dataclass(frozen=True)
class Sweep:
    path: Path
    base: Path | None
    overrides: tuple[str, ...]
    grid: dict[str, list]
    seeds: tuple[int, ...]
    steps: int | None
    peers: tuple[str, ...] = ()
    cases: tuple[tuple[dict, tuple[str, ...]], ...] = ()  # (match, overrides)


@dataclass
class Run:
    name: str
    out: Path
    cfg: DictConfig
    args: list[str]  # the ``mbiapo train`` arguments that start it
    action: str  # "start", "resume" or "skip"
    at_step: int = 0  # the step its checkpoint reached


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file; one MbiapoError naming the file and the problem."""
    data = OmegaConf.to_container(load_yaml(path))
    unknown = set(data) - SWEEP_KEYS
    if unknown:
        raise MbiapoError(f"{path}: unknown sweep key(s) {', '.join(sorted(unknown))} "
                          f"(valid: {', '.join(sorted(SWEEP_KEYS))})")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise MbiapoError(f"{path}: 'grid' must map config keys to non-empty lists of values")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise MbiapoError(f"{path}: 'seeds' must be a non-empty list of distinct integers")
    steps = data.get("steps")
    if steps is not None and (type(steps) is not int or steps < 1):
        raise MbiapoError(f"{path}: 'steps' must be a positive integer")
    overrides = data.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise MbiapoError(f"{path}: 'overrides' must be a list of key=value strings")
    base = path.parent / data["base"] if data.get("base") else None
    if base is not None and not base.is_file():
        raise MbiapoError(f"{path}: base config {base} not found")
    peers = data.get("peers", [])
    if not isinstance(peers, list) or not set(peers) <= set(PEERS):
        raise MbiapoError(f"{path}: 'peers' must be a list of: {', '.join(PEERS)}")
    return Sweep(path, base, tuple(overrides), grid, tuple(seeds), steps, tuple(peers),
                 _cases(path, data.get("cases", []), grid))


def _cases(path: Path, cases, grid: dict) -> tuple:
    """``cases`` checked: each a ``match`` of grid keys to one of their values, and its
    ``overrides``."""
    checked = []
    for case in cases if isinstance(cases, list) else [None]:
        match = case.get("match") if isinstance(case, dict) else None
        overrides = case.get("overrides") if isinstance(case, dict) else None
        if not isinstance(match, dict) or not match or set(case) != {"match", "overrides"} \
                or not isinstance(overrides, list) \
                or not all(isinstance(o, str) for o in overrides):
            raise MbiapoError(f"{path}: each of 'cases' needs 'match' (grid key: value) and "
                              f"'overrides' (a list of key=value)")
        for key, value in match.items():
            if value not in grid.get(key, []):
                raise MbiapoError(f"{path}: a case matches {key}={value}, which the grid "
                                  f"does not have")
        checked.append((match, tuple(overrides)))
    return tuple(checked)


def _value_text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _run_name(values: dict, seed: int) -> str:
    """``InvertedPendulum-v5_direct_s0``; non-string values carry their key: ``beta_train3``."""
    parts = [v if isinstance(v, str) else f"{k.rsplit('.', 1)[-1]}{_value_text(v)}"
             for k, v in values.items()]
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", "_".join([*parts, f"s{seed}"]))


def plan_runs(sweep: Sweep, out: Path, plugins: list[str] = ()) -> list[Run]:
    """One Run per grid combination and seed, with what to do about it; checks every config
    (and every existing run folder) before anything starts."""
    runs, names = [], set()
    for combo in itertools.product(*sweep.grid.values()):
        values = dict(zip(sweep.grid, combo))
        for seed in sweep.seeds:
            name = _run_name(values, seed)
            if name in names:
                raise MbiapoError(f"{sweep.path}: two runs would share the folder {name}; "
                                  f"make the grid values distinct")
            names.add(name)
            overrides = [*sweep.overrides, *(f"{k}={_value_text(v)}" for k, v in values.items()),
                         *(item for match, extra in sweep.cases
                           if all(values.get(k) == v for k, v in match.items())
                           for item in extra),
                         f"train.seed={seed}"]
            overrides += [f"train.steps={sweep.steps}"] if sweep.steps else []
            base = str(sweep.base) if sweep.base else None
            try:
                cfg = compose(config_file=base, overrides=overrides)
            except MbiapoError as e:
                raise MbiapoError(f"{sweep.path}: run {name}: {e}") from None
            run_out = out.absolute() / name  # a Ray worker's cwd may differ
            args = ["train", "--out", str(run_out), *(["--config", base] if base else []),
                    *(f"--plugin={plugin}" for plugin in plugins), *overrides]
            runs.append(_with_action(Run(name, run_out, cfg, args, "start")))
    return runs + _peer_runs(sweep, out, names)


def _peer_runs(sweep: Sweep, out: Path, names: set[str]) -> list[Run]:
    """One Run per peer, combination of the grid's keys outside ``planner`` and seed."""
    from mbiapo import peer

    keys = [key for key in sweep.grid if not key.startswith("planner.")]
    runs = []
    for name, combo, seed in itertools.product(
            sweep.peers, itertools.product(*(sweep.grid[k] for k in keys)), sweep.seeds):
        values = dict(zip(keys, combo))
        run_name = _run_name({**values, "peer": name}, seed)
        if run_name in names:
            raise MbiapoError(f"{sweep.path}: a peer run would share the folder {run_name}")
        overrides = [*sweep.overrides, *(f"{k}={_value_text(v)}" for k, v in values.items()),
                     f"train.seed={seed}", *([f"train.steps={sweep.steps}"]
                                             if sweep.steps else [])]
        base = str(sweep.base) if sweep.base else None
        try:
            cfg = compose(config_file=base, overrides=overrides)
        except MbiapoError as e:
            raise MbiapoError(f"{sweep.path}: run {run_name}: {e}") from None
        run_out = out.absolute() / run_name
        args = ["peer", name, "--out", str(run_out), *(["--config", base] if base else []),
                *overrides]
        done = peer.finished(run_out, cfg.train.steps)
        runs.append(Run(run_name, run_out, cfg, args, "skip" if done else "start",
                        cfg.train.steps if done else 0))
    return runs


def _with_action(run: Run) -> Run:
    if not (run.out / "checkpoint.pt").is_file():
        return run
    from mbiapo.checkpoint import read_checkpoint

    payload = read_checkpoint(run.out / "checkpoint.pt")
    changed = differences(from_container(payload["config"]), run.cfg,
                          ignore=("train.steps", "train.device"))  # a sweep may extend runs
    if changed:
        key, here, there = changed[0]
        raise MbiapoError(f"{run.out} holds a run with another config ({key}: {here!r} "
                          f"there, {there!r} in the sweep); pass another --out or move that "
                          f"folder")
    run.at_step = int(payload["step"])
    steps = run.cfg.train.steps
    run.action = "skip" if run.at_step >= steps else "resume"
    run.args = ["train", "--resume", str(run.out), "--steps", str(steps),
                *(arg for arg in run.args if arg.startswith("--plugin="))]
    return run


def _parent_death_signal():
    """A function for the child to call between fork and exec that makes the kernel SIGTERM
    it when the thread that started it dies (a Ray worker killed with its driver), so an
    orphaned run saves a checkpoint and stops. Resolved here: the child must not import or
    load libraries. None off Linux."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _last_error(log: Path) -> str:
    """The run's ``mbiapo: error:`` line, else the last line it printed (a traceback's end)."""
    with open(log, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 20_000))
        lines = [line.strip() for line in re.split(r"[\r\n]", f.read().decode(errors="replace"))]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("mbiapo: error:")]
    return (errors or lines or ["(no output)"])[-1][:300]


def _wait(child: subprocess.Popen) -> int:
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass


def execute(args: list[str], log: str, cpus: int) -> dict:
    """Run ``mbiapo ARGS`` in a child process with ``cpus`` threads, appending its output to
    ``log``; a Ray task. Cancelling the task stops the child the way Ctrl-C does: it saves a
    checkpoint first. Returns {"returncode", "seconds", "error"}."""
    env = {**os.environ, "OMP_NUM_THREADS": str(cpus), "MKL_NUM_THREADS": str(cpus)}
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "ab") as f:
        f.write(f"$ mbiapo {' '.join(args)}\n".encode())
        f.flush()
        child = subprocess.Popen([sys.executable, "-m", "mbiapo.cli", *args], stdout=f,
                                 stderr=subprocess.STDOUT, env=env,
                                 preexec_fn=_parent_death_signal())
        try:
            code = _wait(child)
        except KeyboardInterrupt:  # ray.cancel raises it between bytecodes, hence _wait's poll
            child.send_signal(signal.SIGTERM)
            code = child.wait()
    seconds = time.perf_counter() - start
    return {"returncode": code, "seconds": seconds,
            "error": _last_error(Path(log)) if code else ""}


def require_ray():
    """The ray module, or one MbiapoError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MbiapoError(RAY_MISSING) from None
    return ray


def _start_ray(address: str | None, num_cpus: int):
    ray = require_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
    except Exception as e:  # ConnectionError, RuntimeError... from a bad address
        raise MbiapoError(f"cannot start or reach Ray at {address or 'a local instance'} "
                          f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return ray


def check_cpus(address: str | None, cpus_per_run: int, num_cpus: int | None) -> int:
    """The local instance's CPUs; MbiapoError for CPU flags that cannot work."""
    if cpus_per_run < 1 or (num_cpus is not None and num_cpus < 1):
        raise MbiapoError("--cpus-per-run and --num-cpus must be >= 1")
    if address and num_cpus:
        raise MbiapoError("--num-cpus sizes a local Ray instance; a cluster at --address "
                          "has its own")
    local_cpus = num_cpus or os.cpu_count() or 1
    if not address and cpus_per_run > local_cpus:
        raise MbiapoError(f"--cpus-per-run {cpus_per_run} exceeds the {local_cpus} CPUs of "
                          f"the local Ray instance")
    return local_cpus


def run_sweep(sweep: Sweep, runs: list[Run], out: Path, address: str | None = None,
              cpus_per_run: int = 1, num_cpus: int | None = None, on_done=None) -> dict:
    """Run the unfinished ``runs`` (``plan_runs(sweep, out)``) as Ray tasks (``cpus_per_run``
    CPUs each) on the cluster at ``address``, or on a new local instance with ``num_cpus``
    CPUs (default: all of this machine's), and return
    {"runs": [...], "wall_s", "sum_run_s", "speedup"}; ``on_done(run_result)`` is called as
    each run ends. Failed runs are reported, never raised."""
    from mbiapo.run_folder import set_aside_partial

    local_cpus = check_cpus(address, cpus_per_run, num_cpus)
    todo = [run for run in runs if run.action != "skip"]
    results = {run.name: {"name": run.name, "status": "skipped", "seconds": 0.0,
                          "error": "", "out": str(run.out)} for run in runs}
    start = time.perf_counter()
    if todo:
        ray = _start_ray(address, local_cpus)
        try:
            available = ray.cluster_resources().get("CPU", 0)
            if available < cpus_per_run:
                raise MbiapoError(f"--cpus-per-run {cpus_per_run} exceeds the {available:g} "
                                  f"CPUs of the Ray cluster")
            for run in todo:  # keep what an attempt that never saved left, apart
                if run.action == "start":
                    set_aside_partial(run.out)
            task = ray.remote(execute).options(num_cpus=cpus_per_run, max_retries=0)
            pending = {task.remote(run.args, str(run.out / "train.log"), cpus_per_run): run
                       for run in todo}
            _collect(ray, pending, results, on_done)
        finally:
            ray.shutdown()
    wall = time.perf_counter() - start
    ran = [r["seconds"] for r in results.values() if r["status"] != "skipped"]
    write_json_atomic(out / "sweep.json", {"sweep": str(sweep.path), "wall_s": wall,
                                           "runs": list(results.values())})
    return {"out": str(out), "runs": list(results.values()), "wall_s": wall,
            "sum_run_s": sum(ran), "speedup": sum(ran) / wall if ran else float("nan")}


def _collect(ray, pending: dict, results: dict, on_done) -> None:
    """Wait for the tasks; on Ctrl-C cancel them (each run saves its checkpoint) and wait."""
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as e:  # the task itself died (worker lost, node down)
                outcome = {"returncode": -1, "seconds": 0.0,
                           "error": (str(e).strip().splitlines() or [type(e).__name__])[-1]}
            result = results[run.name]
            result.update(seconds=outcome["seconds"], error=outcome["error"],
                          status="failed" if outcome["returncode"] else
                          ("resumed" if run.action == "resume" else "finished"))
            if on_done:
                on_done(result)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=120)
        raise


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
