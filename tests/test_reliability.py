"""Runs survive bad flags, saves cut short and unwritable outputs, and never lose or mix data
(issue 16). Each test names the fault it guards against; the kill stress test is in
test_kill_during_save.py."""

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mbiapo import run_folder
from mbiapo.checkpoint import read_checkpoint
from mbiapo.errors import MbiapoError
from mbiapo.train import resume_run, start_run
from tests.helpers import TINY, error_line, run_cli, tiny_config
from tests.test_datasets import _minari

RUN = [*TINY, "train.checkpoint_every=100"]


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (the lock file aside)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != run_folder.LOCK}


def _steps(out: Path) -> list[int]:
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    return [int(row.split(",")[0]) for row in rows]


@pytest.fixture(scope="module")
def online_run(tmp_path_factory) -> Path:
    """A finished 200-step online run (model-free, direct), never modified: copy it."""
    out = tmp_path_factory.mktemp("reliability") / "run"
    start_run(tiny_config(extra=[*RUN, "train.steps=200"]), out).run()
    return out


@pytest.fixture
def run_copy(online_run, tmp_path) -> Path:
    return Path(shutil.copytree(online_run, tmp_path / "run"))


# ------------------------------------------------------------- resume --steps (bug 1)
@pytest.mark.parametrize(("steps", "message"), [
    ("0", "--steps must be >= 1, got 0"), ("-5", "--steps must be >= 1, got -5"),
    ("100", "is at step 200 and --steps 100"), ("200", "is at step 200 and --steps 200"),
    (None, "is at step 200 and it finished (train.steps=200)")])
def test_resume_without_steps_to_train_is_refused_and_touches_nothing(run_copy, capsys,
                                                                      steps, message):
    before = _digests(run_copy)
    flags = [] if steps is None else ["--steps", steps]
    assert message in error_line(capsys, "train", "--resume", run_copy, *flags)
    assert _digests(run_copy) == before
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", run_copy, "--episodes", "1")
    assert code == 0, err


# ----------------------------------------------------------- saves cut short (bugs 2, 4)
class _Killed(BaseException):
    """Stands in for SIGKILL: nothing catches it, so nothing more is saved."""


@pytest.mark.parametrize("cut", ["before the checkpoint commits", "after it commits"])
def test_a_save_cut_short_resumes_from_a_consistent_pair(tmp_path, monkeypatch, cut):
    """Cut the step-100 save of a 150-step run (checkpoints and metrics every 50) between its
    files, then resume: the run continues from the pair the checkpoint names and ends with
    one metrics row per evaluation step and a replay of 150 transitions."""
    out = tmp_path / "run"
    trainer = start_run(tiny_config(extra=[*TINY, "train.steps=150", "train.eval_every=50",
                                           "train.checkpoint_every=50",
                                           "train.eval_episodes=1"]), out)
    commit, rename = run_folder.save_checkpoint, os.replace
    before = cut.startswith("before")

    def cut_commit(path, agent, state):
        if state["step"] == 100 and before:
            raise _Killed
        commit(path, agent, state)

    def cut_rename(src, dst):
        if Path(dst).name == run_folder.REPLAY and trainer.step == 100 and not before:
            raise _Killed
        rename(src, dst)

    monkeypatch.setattr(run_folder, "save_checkpoint", cut_commit)
    monkeypatch.setattr(run_folder.os, "replace", cut_rename)
    with pytest.raises(_Killed):
        trainer.run()
    monkeypatch.undo()
    assert (out / run_folder.NEXT_REPLAY).is_file() and _steps(out) == [50, 100]
    committed = 50 if before else 100
    assert read_checkpoint(out)["step"] == committed

    resumed = resume_run(out, steps=None)
    assert resumed.step == committed and len(resumed.buffer) == committed
    assert not (out / run_folder.NEXT_REPLAY).exists()
    assert _steps(out) == [50, 100][:committed // 50]  # rows past the checkpoint dropped
    resumed.run()
    assert _steps(out) == [50, 100, 150]
    with h5py.File(out / "replay.h5") as f:
        assert f["observations"].shape[0] == 150 and f["metadata/step"][()] == 150


def test_a_row_cut_by_a_kill_is_dropped(run_copy):
    text = (run_copy / "metrics.csv").read_text()
    (run_copy / "metrics.csv").write_text(text + "300,51,2")  # no newline: cut mid-row
    run_folder.recover(run_copy, 200, online=True)
    assert (run_copy / "metrics.csv").read_text() == text


def test_ctrl_c_saves_the_time_trained(tmp_path, monkeypatch):
    """wall_s counts up to the interrupt, not to the last metrics row (none here)."""
    trainer = start_run(tiny_config(extra=[*RUN, "train.steps=1000", "train.eval_every=1000"]),
                        tmp_path / "run")
    update, calls = trainer.agent.update, []

    def slow_update(batch):
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        time.sleep(0.02)
        return update(batch)

    monkeypatch.setattr(trainer.agent, "update", slow_update)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    elapsed = time.perf_counter() - start
    assert 19 * 0.02 <= read_checkpoint(tmp_path / "run")["wall_s"] <= elapsed


# -------------------------------------------------------- folders holding a run (bug 4)
def test_a_folder_with_part_of_a_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("train:\n  lr: 0.1\n")
    (out / "metrics.csv").write_text("")
    (out / "replay.h5.tmp").write_bytes(b"\0" * 10)
    before = _digests(out)
    line = error_line(capsys, "train", "--env", "InvertedPendulum-v5", "--out", out, *RUN)
    assert "holds part of a run that never saved a checkpoint" in line
    assert "config.yaml, metrics.csv, replay.h5.tmp" in line
    assert "never saved a checkpoint" in error_line(capsys, "train", "--resume", out)
    assert _digests(out) == before


def test_a_sweep_sets_a_partial_run_aside(tmp_path):
    out = tmp_path / "run"
    for attempt in (1, 2):
        out.mkdir(exist_ok=True)
        (out / "metrics.csv").write_text(f"step\n{attempt}\n")
        (out / "train.log").write_text("log")  # the sweep's log is not part of the run
        assert run_folder.set_aside_partial(out) == out / f"unfinished-{attempt}"
        assert (out / f"unfinished-{attempt}" / "metrics.csv").read_text() == f"step\n{attempt}\n"
        run_folder.check_new_run(out)  # the folder takes a new run
    assert run_folder.set_aside_partial(out) is None


def test_a_folder_in_use_is_refused(run_copy, capsys):
    held = run_folder.lock(run_copy)
    try:
        assert "is in use" in error_line(capsys, "train", "--resume", run_copy, "--steps", "300")
    finally:
        held.close()
    code, _, err = run_cli(capsys, "train", "--resume", run_copy, "--steps", "300")
    assert code == 0, err


# ------------------------------------------------------------- config.yaml on resume
def test_resume_reports_config_yaml_edits_and_leaves_the_file(run_copy, capsys):
    path = run_copy / "config.yaml"
    path.write_text(path.read_text().replace("lr: 0.0003", "lr: 0.5"))
    edited = path.read_bytes()
    code, _, err = run_cli(capsys, "train", "--resume", run_copy, "--steps", "300")
    assert code == 0
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "train.lr: 0.5 in the file, 0.0003 in the checkpoint" \
        in warnings[0]
    assert path.read_bytes() == edited
    assert read_checkpoint(run_copy)["config"]["train"]["lr"] == 0.0003

    path.write_text(path.read_text().replace("lr: 0.5", "lr: banana"))
    code, _, err = run_cli(capsys, "train", "--resume", run_copy, "--steps", "400")
    assert code == 0 and "config.yaml is not a valid config" in err


def test_resume_keeps_an_unedited_config_yaml_in_step(run_copy, capsys):
    code, _, err = run_cli(capsys, "train", "--resume", run_copy, "--steps", "300")
    assert code == 0 and "warning" not in err
    assert "steps: 300" in (run_copy / "config.yaml").read_text()


# ------------------------------------------------------ output paths checked first (bug 3)
def test_outputs_that_are_files_or_under_files(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("keep me")
    train = ["train", "--env", "InvertedPendulum-v5", *RUN]
    assert "is a file, not a folder" in error_line(capsys, *train, "--out", file)
    assert f"cannot create it, {file} is a file" in error_line(capsys, *train, "--out",
                                                               file / "run")
    collect = ["collect", "--random", "--env", "InvertedPendulum-v5", "--episodes", "1"]
    assert "does not exist" in error_line(capsys, *collect, "--out", file / "d.h5")
    assert "is a folder" in error_line(capsys, *collect, "--out", tmp_path)
    assert file.read_text() == "keep me"


def _make_read_only(folder: Path) -> None:
    """Make ``folder`` read-only for this process: chmod for users, the immutable attribute
    for root (which ignores permission bits); skip where neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root where folders cannot be made immutable")


def _make_writable(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


@pytest.fixture
def read_only(online_run, tmp_path):
    """(an empty read-only folder, a read-only copy of the online run)."""
    ro, run = tmp_path / "ro", Path(shutil.copytree(online_run, tmp_path / "run"))
    ro.mkdir()
    made = []
    try:
        for folder in (ro, run):
            _make_read_only(folder)
            made.append(folder)
        yield ro, run
    finally:
        for folder in made:
            _make_writable(folder)


def test_read_only_outputs_fail_first_with_one_line(read_only, capsys):
    ro, run = read_only
    before = _digests(run)
    cases = [
        (["train", "--env", "InvertedPendulum-v5", "--out", ro / "run", *RUN],
         f"--out {ro / 'run'}: no permission to write in {ro}"),
        (["collect", "--random", "--env", "InvertedPendulum-v5", "--episodes", "1", "--out",
          ro / "d.h5"], f"--out {ro / 'd.h5'}: no permission to write in {ro}"),
        (["states", "--checkpoint", run, "--n", "10", "--out", ro / "s.h5"],
         f"--out {ro / 's.h5'}: no permission to write in {ro}"),
        (["train", "--resume", run, "--steps", "100000"],  # fails before training, not after
         f"--resume {run}: no permission to write in the run folder"),
    ]
    for argv, message in cases:
        assert error_line(capsys, *argv) == f"mbiapo: error: {message}"
    assert _digests(run) == before and not any(ro.iterdir())


def test_plan_model_based_beside_a_read_only_run_caches_elsewhere(read_only, tmp_path,
                                                                  monkeypatch, capsys):
    _, run = read_only
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    argv = ["plan", "--checkpoint", run, "--model-based", "--episodes", "1", "--fit-steps", "20",
            "--json"]
    for attempt in ("fitted on", "fitted (cached"):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, err
        assert json.loads(out)["value_source"].startswith(attempt)
    assert len(list((tmp_path / "cache" / "mbiapo").glob("checkpoint.mb-*.pt"))) == 1


# -------------------------------------------------------------------- smaller faults (5, 6)
def test_plan_model_based_fits_on_a_minari_folder(run_copy, tmp_path, capsys):
    folder = _minari(tmp_path / "minari")
    code, out, err = run_cli(capsys, "plan", "--checkpoint", run_copy, "--model-based",
                             "--data", folder, "--episodes", "1", "--fit-steps", "20", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["value_source"] == f"fitted on {folder}" and result["fit_transitions"] == 24


def test_integer_observations_are_converted_and_said_so(tmp_path, capsys):
    obs = np.arange(40, dtype=np.int64).reshape(10, 4)
    path = tmp_path / "ints.h5"
    with h5py.File(path, "w") as f:
        f["observations"], f["actions"] = obs, np.zeros((10, 1), np.float32)
        f["rewards"], f["terminals"] = np.ones(10, np.float32), np.arange(10) == 9
    code, out, err = run_cli(capsys, "dataset", "info", path, "--json")
    assert code == 0, err
    assert json.loads(out)["converted"] == "observations int64 -> float32"
    from mbiapo.datasets import read_dataset

    data = read_dataset(path)
    np.testing.assert_array_equal(data.arrays["observations"], obs.astype(np.float32))


def test_a_truncated_checkpoint_gets_a_whole_sentence(tmp_path, capsys):
    """The issue's reproduction: the shipped checkpoint cut at 100 kB."""
    shipped = Path(__file__).parents[1] / "mbiapo" / "pretrained" / "ip-iterative"
    bad = tmp_path / "bad.pt"
    bad.write_bytes((shipped / "checkpoint.pt").read_bytes()[:100_000])
    line = error_line(capsys, "evaluate", "--checkpoint", bad, "--episodes", "1")
    assert line == (f"mbiapo: error: {bad}: not a readable mbiapo checkpoint, truncated or "
                    f"corrupt (PytorchStreamReader failed reading zip archive: failed finding "
                    f"central directory)")


def test_an_offline_run_without_an_env_is_evaluated_with_env(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "no_env.h5"
    with h5py.File(path, "w") as f:  # a dataset that names no environment
        f["observations"] = rng.standard_normal((200, 4)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (200, 1)).astype(np.float32)
        f["rewards"], f["terminals"] = np.ones(200, np.float32), np.arange(200) % 50 == 49
    code, _, err = run_cli(capsys, "train", "--offline", path, "--out", tmp_path / "off",
                           "--steps", "40", *RUN)
    assert code == 0, err
    evaluate = ["evaluate", "--checkpoint", tmp_path / "off", "--episodes", "1"]
    assert "take --env ENV_ID" in error_line(capsys, *evaluate)
    assert "differs from the checkpoint's" not in error_line(capsys, *evaluate, "--env",
                                                             "NoSuchEnv-v0")
    code, _, err = run_cli(capsys, *evaluate, "--env", "InvertedPendulum-v5")
    assert code == 0, err


def test_resume_refuses_a_folder_without_a_run(tmp_path, capsys):
    assert "no run there (no checkpoint.pt)" in error_line(capsys, "train", "--resume",
                                                           tmp_path / "nothing")
    with pytest.raises(MbiapoError, match="never saved a checkpoint"):
        (tmp_path / "metrics.csv").write_text("step\n")
        run_folder.check_resumable(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_named_not_a_load_error(run_copy, capsys):
    line = error_line(capsys, "evaluate", "--checkpoint", run_copy, "--device", "cuda")
    assert "device 'cuda' asked for, but torch sees no CUDA device here" in line
