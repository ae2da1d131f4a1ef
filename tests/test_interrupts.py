"""Ctrl-C: every command stops with one ``mbiapo: interrupted`` line and exit code 130, no
traceback, and no output that looks complete; ``train`` saves first, and a second Ctrl-C
during that save neither cuts it short nor loses the run. ``train`` puts back the SIGTERM
handler it replaces.

The commands run as child processes (``python -m mbiapo.cli``), each sent SIGINT once its
first progress bar shows, on work sized to last far longer than that."""

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mbiapo import collect
from mbiapo.analyses.states import collect_states, save_states
from mbiapo.checkpoint import load_agent, read_checkpoint
from mbiapo.train import start_run
from tests.helpers import TINY, run_cli, tiny_config

IP = "InvertedPendulum-v5"
CLI = [sys.executable, "-m", "mbiapo.cli"]
TIMEOUT = 120  # seconds for a child to start working, or to exit once interrupted
BAR = re.compile(r"\d+%\|.*\|")  # a progress bar left on its line (tqdm's leave=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 100-step online run, and beside it states.h5, 20 of its states."""
    out = tmp_path_factory.mktemp("interrupts") / "run"
    start_run(tiny_config(extra=["train.steps=100", "train.checkpoint_every=100"]), out).run()
    agent, _ = load_agent(out)
    save_states(out.parent / "states.h5", collect_states(agent, 20, 0, 2), agent, {})
    return out


def _child(argv: list) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _first_output(proc: subprocess.Popen) -> bytes:
    """Wait for the child's first byte on stderr (its first progress bar)."""
    ready, _, _ = select.select([proc.stderr], [], [], TIMEOUT)
    assert ready, "the command printed nothing"
    return os.read(proc.stderr.fileno(), 1)


def _finish(proc: subprocess.Popen, first: bytes) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) once the child exits (killed if it hangs)."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), (first + err).decode()


def _shown(err: str) -> list[str]:
    """The lines stderr leaves on a terminal, progress bars aside: each line's text after
    its last carriage return (a bar redraws its line with \\r), empty ones dropped."""
    lines = [line.rpartition("\r")[2].strip() for line in err.split("\n")]
    return [line for line in lines if line and not BAR.search(line)]


def _interrupted(argv: list) -> tuple[int, str, str]:
    """Run ``mbiapo ARGV``, send SIGINT once it has started working."""
    proc = _child(argv)
    first = _first_output(proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    return _finish(proc, first)


COMMANDS = {  # each far longer than its start: its work is cut short, not finished
    "evaluate": ["evaluate", "--checkpoint", "{run}", "--planner", "cem", "--iters", "1000",
                 "--episodes", "50"],
    "plan": ["plan", "--checkpoint", "{run}", "--planner", "cem", "--iters", "1000",
             "--episodes", "20"],
    "plan --model-based": ["plan", "--checkpoint", "{run}", "--model-based", "--fit-steps",
                           "1000000", "--episodes", "1"],
    "compare": ["compare", "--checkpoint", "{run}", "--states", "{states}", "--planners",
                "cem", "--iters", "1000000", "--out", "{tmp}/result"],
    "collect": ["collect", "--checkpoint", "{run}", "--planner", "cem", "planner.iters=1000",
                "--episodes", "50", "--out", "{tmp}/result"],
    "states": ["states", "--checkpoint", "{run}", "--n", "1000000", "--out", "{tmp}/result"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_ctrl_c_is_one_line_and_exit_code_130(run, tmp_path, command):
    argv = [arg.format(run=run, states=run.parent / "states.h5", tmp=tmp_path)
            for arg in COMMANDS[command]]
    before = sorted(run.parent.rglob("*"))
    code, out, err = _interrupted(argv)
    assert code == 130, err
    assert "Traceback" not in err and out == ""
    assert _shown(err) == ["mbiapo: interrupted"], err
    assert list(tmp_path.iterdir()) == []  # no result, no temporary file, no empty folder
    assert sorted(run.parent.rglob("*")) == before  # nothing cached from a cut-short fit


def test_a_command_started_with_ctrl_c_ignored_keeps_ignoring_it(run, tmp_path):
    """A shell's background job (``mbiapo ... &``) starts with Ctrl-C ignored; mbiapo keeps it
    so, as programs do (``train`` defers only handlers that raise)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the child
    try:
        proc = _child(["states", "--checkpoint", run, "--n", "1000000", "--out",
                       tmp_path / "result"])
    finally:
        signal.signal(signal.SIGINT, previous)
    first = _first_output(proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    running = proc.poll() is None
    proc.kill()
    _, _, err = _finish(proc, first)
    assert running, err
    assert "interrupted" not in err


def test_ctrl_c_while_collect_writes_leaves_no_file(tmp_path, capsys, monkeypatch):
    def interrupted_write(path, arrays, metadata):
        Path(f"{path}.tmp").write_bytes(b"\0" * 100)  # part of its temporary file
        raise KeyboardInterrupt

    monkeypatch.setattr(collect, "write_d4rl", interrupted_write)
    try:
        code, out, err = run_cli(capsys, "collect", "--random", "--env", IP, "--episodes", "1",
                                 "--out", tmp_path / "data.h5")
    except KeyboardInterrupt:  # would stop pytest itself
        pytest.fail("Ctrl-C escaped main as a KeyboardInterrupt")
    assert (code, out, _shown(err)) == (130, "", ["mbiapo: interrupted"])
    assert list(tmp_path.iterdir()) == []


# the child saves slowly: the save it starts on Ctrl-C takes long enough for a second
SLOW_SAVE = """
import sys, time
from pathlib import Path

import mbiapo.replay
from mbiapo.cli import main

write = mbiapo.replay.write_d4rl


def slow_write(path, arrays, metadata):
    Path(sys.argv[1]).touch()  # the save has started
    time.sleep(2)
    write(path, arrays, metadata)


mbiapo.replay.write_d4rl = slow_write
sys.exit(main(sys.argv[2:]))
"""


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    end = time.monotonic() + TIMEOUT
    while not path.exists():
        assert proc.poll() is None, "the run exited before it was interrupted"
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.01)


def test_ctrl_c_twice_during_the_first_save_keeps_the_run(tmp_path, capsys):
    """The first Ctrl-C saves (the run's first checkpoint); the second, during that save,
    waits for it to end: exit code 130, and the run resumes from the saved step."""
    out, saving = tmp_path / "run", tmp_path / "saving"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, saving, "train", "--env", IP, "--steps", "100000",
         "--out", out, *TINY, "train.eval_every=50", "train.checkpoint_every=100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _wait_for(out / "metrics.csv", proc)  # 50 steps trained
        proc.send_signal(signal.SIGINT)
        _wait_for(saving, proc)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # the save is now in its 2 s sleep
    finally:
        code, _, err = _finish(proc, b"")
    assert code == 130, err
    assert "Traceback" not in err
    step = read_checkpoint(out)["step"]
    assert _shown(err)[-1] == (f"interrupted at step {step}; checkpoint saved; continue with "
                               f"'mbiapo train --resume {out}'")
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    code, _, err = run_cli(capsys, "train", "--resume", out, "--steps", step + 20)
    assert code == 0, err
    assert read_checkpoint(out)["step"] == step + 20


def test_train_puts_back_the_callers_sigterm_handler(tmp_path, capsys):
    def callers(signum, frame):
        """A handler of the process that calls ``main``."""

    before = signal.signal(signal.SIGTERM, callers)
    try:
        code, _, err = run_cli(capsys, "train", "--env", IP, "--steps", "60", "--out",
                               tmp_path / "run", *TINY)
        assert code == 0, err
        assert signal.getsignal(signal.SIGTERM) is callers
    finally:
        signal.signal(signal.SIGTERM, before)


def test_ctrl_c_while_the_command_still_imports_is_one_line():
    """The console script's entry point (mbiapo.launch) imports torch inside main."""
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "import sys; from mbiapo.launch import "
                              "main; sys.exit(main())", "--help"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.15)  # python is up; torch takes a second to import
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130 and out == "", (child.returncode, err)
    assert err.strip() == "mbiapo: interrupted"


def test_ctrl_c_during_a_scheduled_save_saves_once(tmp_path, monkeypatch):
    """run_folder.save defers Ctrl-C to its end; the trainer then has nothing more to save."""
    from mbiapo import api, run_folder

    real, calls = run_folder.save, []

    def save_then_interrupted(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(args[2]["step"])
        if len(calls) == 1:
            raise KeyboardInterrupt  # as the deferred Ctrl-C leaves the finished save

    monkeypatch.setattr(run_folder, "save", save_then_interrupted)
    cfg = api.compose("InvertedPendulum-v5", "direct", overrides=[
        "train.steps=120", "train.warmup_steps=40", "train.checkpoint_every=60",
        "train.eval_every=60", "train.eval_episodes=1", "train.batch_size=16",
        "planner.hidden=16", "value.hidden=16", "env.max_episode_steps=20"])
    with pytest.raises(KeyboardInterrupt):
        api.train(cfg, tmp_path / "run")
    assert calls == [60]
