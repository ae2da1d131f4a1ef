"""A training run's folder: the one routine that saves it, recovery from a save cut short,
and the checks that a folder can take a new run or be resumed.

A run folder holds::

    config.yaml    the composed config, for people to read (the checkpoint's copy is the one
                   a resume uses; see ``report_config_edits``)
    metrics.csv    one row per evaluation step
    checkpoint.pt  agent, optimizers, counters and RNG states at step S
    replay.h5      online runs: the replay buffer at step S (``metadata/step``)

``save`` commits the checkpoint and its replay together: the replay is written whole to
``replay.next.h5``, then the checkpoint replaces ``checkpoint.pt`` (the commit), then
``replay.next.h5`` replaces ``replay.h5``. A kill at any moment leaves either the previous
pair or the new checkpoint with its replay still in ``replay.next.h5``; ``recover`` moves it
into place (or deletes an uncommitted one). Metrics rows are written before the save of the
step they describe, so ``recover`` also drops the rows past the checkpoint's step: the
resumed run writes them again, exactly once. Ctrl-C during a save waits for it to end, and a
save that fails (a full disk) removes what it wrote, so the previous pair stays.

``.lock`` holds the pid of the process training in the folder; every check of a folder
looks at it first (``check_not_in_use``).
"""

import contextlib
import csv
import fcntl
import io
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import h5py
from omegaconf import DictConfig, OmegaConf

from mbiapo.checkpoint import save_checkpoint
from mbiapo.config import differences, from_container, load_yaml
from mbiapo.errors import MbiapoError
from mbiapo.metrics_log import TENSORBOARD_DIR
from mbiapo.paths import check_writable_folder, temporary, written

CONFIG, METRICS, CHECKPOINT, REPLAY = "config.yaml", "metrics.csv", "checkpoint.pt", "replay.h5"
NEXT_REPLAY = "replay.next.h5"
LOCK = ".lock"  # held by the process training in the folder
SWEEP_LOG = "train.log"  # a sweep's log of the run (sweep.py), written before it starts
# what a run (or a save it did not finish) leaves in its folder
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, REPLAY, CHECKPOINT + ".tmp", REPLAY + ".tmp",
             NEXT_REPLAY, NEXT_REPLAY + ".tmp", METRICS + ".tmp", CONFIG + ".tmp")


def check_not_in_use(out: Path) -> None:
    """One line naming the process that trains in ``out``, if one does. Checked before
    anything else about a folder: a live run that has not saved yet looks like one cut
    short, and the advice for those (delete its files) would destroy it."""
    try:
        f = open(out / LOCK)
    except OSError:  # no lock file, or no folder: nobody trains there
        return
    with f:  # closing it lets go of the probe's shared lock
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise _in_use(out, f.read()) from None


def _in_use(out: Path, holder: str) -> MbiapoError:
    """The error for a folder whose lock is held; ``holder``: the lock file's text, the
    holder's pid (empty for a moment while it writes it)."""
    pid = holder.strip()
    who = f"a running mbiapo (pid {pid})" if pid.isdigit() else "another running mbiapo"
    return MbiapoError(f"{out} is in use by {who}; wait for it to finish or stop it first")


def check_new_run(out: Path) -> None:
    """``out`` can take a new run: writable, no process training there, and empty but for
    what earlier mbiapo runs leave (``_foreign``)."""
    check_not_in_use(out)
    check_writable_folder(out)
    if (out / CHECKPOINT).exists():
        raise MbiapoError(f"{out} already holds a run; continue it with "
                          f"'mbiapo train --resume {out}' or pick another --out")
    left = [name for name in RUN_FILES if (out / name).exists()]
    if left:
        raise MbiapoError(f"{out} holds part of a run that never saved a checkpoint "
                          f"({', '.join(left)}); delete those files or pick another --out")
    foreign = _foreign(out)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise MbiapoError(f"--out {out} is not empty ({', '.join(foreign[:3])}{more}); pick "
                          f"a new or empty folder")


def _foreign(out: Path) -> list[str]:
    """The entries of ``out`` that no earlier mbiapo run leaves where a new one may start
    (its lock, TensorBoard events, a sweep's log of it, a partial run ``set_aside_partial``
    kept), sorted."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name not in (LOCK, TENSORBOARD_DIR, SWEEP_LOG)
                  and not re.fullmatch(r"unfinished-\d+", p.name))


def check_resumable(out: Path) -> None:
    """``out`` holds a run with a checkpoint, in a folder this process may write in, and no
    process trains there."""
    check_not_in_use(out)
    if not (out / CHECKPOINT).is_file():
        if out.is_dir() and any((out / name).exists() for name in RUN_FILES):
            raise MbiapoError(f"{out} holds part of a run that never saved a checkpoint, so "
                              f"there is nothing to resume; delete it and start again")
        raise MbiapoError(f"--resume {out}: no run there (no {CHECKPOINT})")
    if not os.access(out, os.W_OK | os.X_OK):
        raise MbiapoError(f"--resume {out}: no permission to write in the run folder")


def resume_target(out: Path, step: int, steps: int | None, configured: int) -> int:
    """The step a resumed run trains to: ``steps`` (the --steps flag) or its configured
    ``train.steps``, which must lie beyond the checkpoint's ``step``."""
    if steps is not None and steps < 1:
        raise MbiapoError(f"--steps must be >= 1, got {steps}")
    target = configured if steps is None else steps
    if target <= step:
        given = (f"--steps {steps}" if steps is not None
                 else f"it finished (train.steps={configured})")
        raise MbiapoError(f"{out} is at step {step} and {given}; pass --steps above {step} "
                          f"to train further")
    return target


def lock(out: Path) -> IO:
    """Hold ``out/.lock`` for as long as the returned file stays open, so that a second
    process cannot train in the same folder (the OS releases it when the process dies). The
    file holds the holder's pid, for ``check_not_in_use``."""
    f = open(out / LOCK, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read()
        f.close()
        raise _in_use(out, holder) from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def set_aside_partial(out: Path) -> Path | None:
    """Move the files of a run that never saved a checkpoint into ``out/unfinished-<n>/``
    (kept, not mixed with a new run's); returns that folder, or None if there were none.
    A live run's files are never moved (``check_not_in_use``)."""
    check_not_in_use(out)
    left = [name for name in RUN_FILES if (out / name).exists()]
    if not left or (out / CHECKPOINT).exists():
        return None
    n = 1
    while (out / f"unfinished-{n}").exists():
        n += 1
    aside = out / f"unfinished-{n}"
    aside.mkdir()
    for name in left:
        os.replace(out / name, aside / name)
    return aside


def start(out: Path, cfg: DictConfig) -> IO:
    """Create the folder of a new run (checked by ``check_new_run``), lock it (see ``lock``)
    and write its config.yaml."""
    out.mkdir(parents=True, exist_ok=True)
    held = lock(out)
    _write_atomic(out / CONFIG, OmegaConf.to_yaml(cfg))
    return held


def save(out: Path, agent, state: dict, buffer=None, replay_metadata: dict | None = None) -> None:
    """Commit the checkpoint (``state``: counters and RNG states, with ``step``) and, for online
    runs, the replay ``buffer`` at the same step (see the module docstring). Ctrl-C waits for
    the save to end; a failed one (a full disk) is one MbiapoError line, leaves none of its
    files and keeps the previous pair."""
    pending = out / NEXT_REPLAY
    with _interrupts_deferred():
        if buffer is not None:
            with written(pending, pending):
                buffer.save(pending, {**(replay_metadata or {}), "step": state["step"]})
                _fsync(pending)
        with written(out / CHECKPOINT, pending):  # its replay, if it does not commit
            save_checkpoint(out / CHECKPOINT, agent, state)
        if buffer is not None:
            with written(out / REPLAY):  # committed: its replay stays for ``recover``
                os.replace(pending, out / REPLAY)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Run the block whole: Ctrl-C (and any signal whose handler raises, as ``mbiapo train``'s
    SIGTERM) is held until it ends, then raised, so that a second Ctrl-C cannot cut the save
    that a first one started. Outside the main thread, which alone sets handlers, the
    block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held, previous = [], {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if callable(signal.getsignal(sig)):
            previous[sig] = signal.signal(sig, lambda *received: held.append(received))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        signum, frame = held[0]
        previous[signum](signum, frame)


def _replay_step(path: Path) -> int | None:
    """The step a replay file was saved at (None: unreadable, or saved by mbiapo < 0.3)."""
    try:
        with h5py.File(path, "r") as f:
            meta = f.get("metadata")
            return int(meta["step"][()]) if meta is not None and "step" in meta else None
    except Exception:  # any damage: treated as unreadable, as a missing file
        return None


def recover(out: Path, step: int, online: bool) -> None:
    """Bring the folder back to the checkpoint at ``step``: finish or undo an interrupted
    save, and drop metrics rows past ``step``. Online runs must end with a replay.h5 at
    ``step``."""
    for name in (CHECKPOINT + ".tmp", REPLAY + ".tmp", NEXT_REPLAY + ".tmp", METRICS + ".tmp"):
        (out / name).unlink(missing_ok=True)
    pending = out / NEXT_REPLAY
    if pending.exists():
        if _replay_step(pending) == step:  # the checkpoint committed, the rename did not
            os.replace(pending, out / REPLAY)
        else:  # a save killed before its checkpoint committed
            pending.unlink()
    if online:
        replay = out / REPLAY
        if not replay.is_file():
            raise MbiapoError(f"{out}: cannot resume, replay.h5 is missing (train.save_replay)")
        saved = _replay_step(replay)
        if saved is not None and saved != step:
            raise MbiapoError(f"{out}: replay.h5 was saved at step {saved} but the checkpoint "
                              f"is at step {step}")
    _drop_rows_after(out / METRICS, step)


def _drop_rows_after(path: Path, step: int) -> None:
    """Keep the header and the complete rows of steps <= ``step`` (rewritten atomically)."""
    if not path.is_file():
        return
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if not lines:
        return
    column = next(csv.reader(io.StringIO(lines[0]))).index("step")
    kept = lines[:1]
    for line in lines[1:]:
        if not line.endswith("\n"):  # a row cut by a kill
            continue
        row = next(csv.reader(io.StringIO(line)), [])
        if len(row) > column and row[column].isdigit() and int(row[column]) <= step:
            kept.append(line)
    if "".join(kept) != text:
        _write_atomic(path, "".join(kept))


def report_config_edits(out: Path, cfg: DictConfig) -> str | None:
    """The checkpoint's config is the one a resume uses. A config.yaml that differs from it
    (edited by hand) is left as it is; returns one line saying so, else None."""
    path = out / CONFIG
    if not path.is_file():
        return None
    try:
        edited = _read_config(path)
    except MbiapoError as e:
        return f"{path} is not a valid config ({e}); resuming with the checkpoint's config"
    changed = differences(edited, cfg, ignore=("train.device",))
    if not changed:
        return None
    key, mine, theirs = changed[0]
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    return (f"{path} differs from the checkpoint's config ({key}: {mine!r} in the file, "
            f"{theirs!r} in the checkpoint{more}); resuming with the checkpoint's (edits "
            f"apply to a new run: mbiapo train --config {path} --out NEW_DIR)")


def update_config(out: Path, before: DictConfig, after: DictConfig) -> None:
    """Rewrite config.yaml with a resumed run's config (new ``train.steps``) if it still
    holds ``before`` (or is missing); a hand-edited file is never overwritten."""
    path = out / CONFIG
    if path.is_file():
        try:
            current = _read_config(path)
        except MbiapoError:
            return
        if differences(current, before, ignore=("train.device",)):
            return
    _write_atomic(path, OmegaConf.to_yaml(after))


def _read_config(path: Path) -> DictConfig:
    return from_container(OmegaConf.to_container(load_yaml(path)))


def _write_atomic(path: Path, text: str) -> None:
    tmp = temporary(path)
    with written(path, tmp):
        tmp.write_text(text)
        os.replace(tmp, path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
