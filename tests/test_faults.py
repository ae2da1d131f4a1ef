"""Faults and inputs that used to give a traceback, lose data or escape a folder: a full
disk during a save or a collect, a live run's folder, overrides between flags, --out folders
of unrelated files, pretrained names with path parts, devices mbiapo does not run on."""

import errno
import hashlib
import os
import re
from pathlib import Path

import h5py
import pytest
import torch

from mbiapo import collect, replay, run_folder
from mbiapo.checkpoint import checkpoint_path, read_checkpoint
from mbiapo.cli import build_parser
from mbiapo.cli.training import _run_config
from mbiapo.errors import MbiapoError
from tests.helpers import TINY, count_environments, error_line, run_cli

IP = "InvertedPendulum-v5"


def _no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _failed(capsys, *argv) -> str:
    """Run ``mbiapo ARGV`` expecting it to fail midway, its progress bars shown: exit code
    2, no traceback, one error line, the last one stderr shows (returned)."""
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and "Traceback" not in err and err.count("mbiapo:") == 1
    return err.rstrip().rpartition("\n")[2].rpartition("\r")[2]  # a bar redraws after \r


def _steps(out: Path) -> list[int]:
    return [int(row.split(",")[0]) for row in (out / "metrics.csv").read_text().splitlines()[1:]]


# ------------------------------------------------------------------------- a full disk
@pytest.mark.parametrize("full_at", ["replay", "checkpoint"])
def test_a_full_disk_during_a_save_keeps_the_previous_pair(tmp_path, capsys, monkeypatch,
                                                           full_at):
    """The step-200 save of a 300-step run finds the disk full while it writes the replay or
    the checkpoint: one line, none of its files left, the step-100 pair untouched; once
    there is space again the run resumes from step 100 and ends as if never stopped."""
    out = tmp_path / "run"
    pair = {}  # the digests of the step-100 pair, taken as the failing save starts
    write_replay, save = replay.write_d4rl, torch.save

    def fail(step: int, tmp: Path) -> None:
        if step == 200:
            pair.update({name: _digest(out / name) for name in ("checkpoint.pt", "replay.h5")})
            tmp.write_bytes(b"\0" * 1000)  # what fitted on the disk
            raise _no_space()

    def full_replay(path, arrays, metadata):
        fail(metadata["step"], Path(f"{path}.tmp"))
        write_replay(path, arrays, metadata)

    def full_checkpoint(payload, f):
        fail(payload["step"], Path(f.name))
        save(payload, f)

    if full_at == "replay":
        monkeypatch.setattr(replay, "write_d4rl", full_replay)
        failed = out / "replay.next.h5"
    else:
        monkeypatch.setattr(torch, "save", full_checkpoint)
        failed = out / "checkpoint.pt"
    line = _failed(capsys, "train", "--env", IP, "--steps", "300", "--out", out, *TINY,
                   "train.checkpoint_every=100")
    monkeypatch.undo()
    assert line == f"mbiapo: error: no space left on device writing {failed}"
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.pt", "config.yaml",
                                                     "metrics.csv", "replay.h5"]
    assert pair == {name: _digest(out / name) for name in pair}
    assert read_checkpoint(out)["step"] == 100

    code, _, err = run_cli(capsys, "train", "--resume", out)
    assert code == 0, err
    assert read_checkpoint(out)["step"] == 300 and _steps(out) == [100, 200, 300]
    with h5py.File(out / "replay.h5") as f:
        assert f["observations"].shape[0] == 300 and f["metadata/step"][()] == 300


def test_collect_on_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    def full(path, arrays, metadata):
        Path(f"{path}.tmp").write_bytes(b"\0" * 1000)
        raise _no_space()

    monkeypatch.setattr(collect, "write_d4rl", full)
    out = tmp_path / "data.h5"
    line = _failed(capsys, "collect", "--random", "--env", IP, "--episodes", "1", "--out", out)
    assert line == f"mbiapo: error: no space left on device writing {out}"
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------- a live run's folder
@pytest.mark.parametrize("argv", [["--env", IP, "--out", "{out}"], ["--resume", "{out}"],
                                  ["--offline", "{out}/data.h5", "--out", "{out}"]])
def test_a_live_run_that_has_not_saved_is_never_offered_for_deletion(tmp_path, capsys, argv):
    """A run that holds its folder's lock but has written only its config.yaml looks like
    one that never saved: the lock is checked first, and its holder named."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("train: {}\n")
    held = run_folder.lock(out)
    try:
        line = error_line(capsys, "train", *[arg.format(out=out) for arg in argv])
    finally:
        held.close()
    assert line == (f"mbiapo: error: {out} is in use by a running mbiapo (pid {os.getpid()}); "
                    f"wait for it to finish or stop it first")
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.yaml"]


# ------------------------------------------------------------------ overrides among flags
@pytest.mark.parametrize(("split", "joined"), [
    ("train --env {ip} value.beta_train=0.5 --steps 300 --out D train.warmup_steps=100",
     "train --env {ip} --steps 300 --out D value.beta_train=0.5 train.warmup_steps=100"),
    ("evaluate --checkpoint C planner.population=50 --planner cem planner.elites=6",
     "evaluate --checkpoint C --planner cem planner.population=50 planner.elites=6"),
    ("compare --checkpoint C planner.lr=0.1 --states S --iters 3 planner.elites=6",
     "compare --checkpoint C --states S --iters 3 planner.lr=0.1 planner.elites=6"),
])
def test_overrides_between_flags_parse_as_after_them(split, joined):
    parser = build_parser()
    parsed = [vars(parser.parse_args(text.format(ip=IP).split())) for text in (split, joined)]
    assert parsed[0] == parsed[1]


def test_overrides_between_flags_compose_the_joined_config():
    parser = build_parser()
    split = parser.parse_args(["train", "--env", IP, "value.beta_train=0.5", "--steps", "300",
                               "--out", "D", "train.warmup_steps=100"])
    joined = parser.parse_args(["train", "--env", IP, "--steps", "300", "--out", "D",
                                "value.beta_train=0.5", "train.warmup_steps=100"])
    cfg = _run_config(split, split.env)
    assert cfg == _run_config(joined, joined.env)
    assert (cfg.value.beta_train, cfg.train.warmup_steps, cfg.train.steps) == (0.5, 100, 300)


# ------------------------------------------------------------------------- smaller ones
def test_train_out_refuses_a_folder_of_unrelated_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "data").mkdir()
    line = error_line(capsys, "train", "--env", IP, "--out", out, *TINY)
    assert line == f"mbiapo: error: --out {out} is not empty (data, notes.txt); pick a new " \
                   f"or empty folder"
    assert sorted(p.name for p in out.iterdir()) == ["data", "notes.txt"]


def test_a_folder_holding_only_what_mbiapo_left_takes_a_new_run(tmp_path):
    out = tmp_path / "run"
    for name in ("tb", "unfinished-1"):
        (out / name).mkdir(parents=True)
    for name in (".lock", "train.log"):
        (out / name).write_text("")
    run_folder.check_new_run(out)


@pytest.mark.parametrize("name", ["../pretrained/ip-iterative", "/", "ip-iterative/..", ".."])
def test_a_pretrained_name_never_leaves_the_pretrained_folder(name):
    with pytest.raises(MbiapoError, match=re.escape(f"no shipped checkpoint 'pretrained:{name}'; "
                                                    f"shipped: ip-iterative")):
        checkpoint_path(f"pretrained:{name}")


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_a_device_mbiapo_does_not_run_on_is_named(capsys, device):
    line = error_line(capsys, "evaluate", "--checkpoint", "pretrained:ip-iterative",
                      "--device", device)
    assert line == f"mbiapo: error: device '{device}' is not supported; use cpu, cuda or cuda:N"


def test_collect_never_holds_more_than_a_group_of_environments(monkeypatch):
    seen = count_environments(monkeypatch, collect)
    monkeypatch.setattr(collect, "SIDE_BY_SIDE", 3)
    data = collect.collect(None, IP, 7, 0, max_episode_steps=10)
    assert seen["most"] == 3 and not seen["alive"]
    ends = data["terminals"] | data["timeouts"]
    assert ends.sum() == 7 and ends[-1]


def test_a_billion_episodes_grow_memory_slowly_and_stop_on_ctrl_c(tmp_path):
    """``collect --random --episodes 1000000000``: 0.5 only made every environment first
    (250 MB/s); now its memory is what it has collected, and Ctrl-C ends it in one line."""
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen(
        [sys.executable, "-m", "mbiapo.cli", "collect", "--random", "--env", IP, "--episodes",
         "1000000000", "--out", str(tmp_path / "big.h5"), "--threads", "1"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        rss = []
        for _ in range(40):
            time.sleep(0.25)
            status = Path(f"/proc/{child.pid}/status").read_text()
            rss.append(int(re.search(r"VmRSS:\s+(\d+)", status)[1]) // 1024)  # MB
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert max(rss) < 1000, rss
    assert child.returncode == 130 and "Traceback" not in err
    assert not (tmp_path / "big.h5").exists()


@pytest.mark.parametrize("noise", ["nan", "inf", "-0.1"])
def test_collect_refuses_noise_that_is_not_a_finite_positive_number(tmp_path, capsys, noise):
    line = error_line(capsys, "collect", "--checkpoint", "pretrained:ip-iterative",
                      "--episodes", "1", "--noise", noise, "--out", tmp_path / "d.h5")
    assert "--noise must be a finite number >= 0" in line
    assert not (tmp_path / "d.h5").exists()


def test_video_never_overwrites_earlier_episode_files(tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "episode-3.gif").write_bytes(b"earlier")
    line = error_line(capsys, "evaluate", "--checkpoint", "pretrained:ip-iterative",
                      "--episodes", "2", "--seed", "2", "--video", folder)
    assert "already holds episode-3.gif" in line
    assert (folder / "episode-3.gif").read_bytes() == b"earlier"


def test_a_damaged_replay_file_is_an_exact_read_or_one_error(tmp_path):
    """Seeded byte damage in a saved replay.h5: ReplayBuffer.load reads it exactly (raw
    array bytes carry no checksum, so damage there is another valid file: compared with
    plain h5py) or raises one MbiapoError line, never another exception."""
    import numpy as np

    buffer = replay.ReplayBuffer(3, 2, 40)
    rng = np.random.default_rng(0)
    for _ in range(30):
        buffer.add(rng.standard_normal(3), rng.uniform(-1, 1, 2), 1.0, rng.standard_normal(3),
                   False, False)
    clean = tmp_path / "replay.h5"
    buffer.save(clean, {"step": 30})
    data = clean.read_bytes()
    outcomes = {"read": 0, "error": 0}
    for case in range(60):
        damaged = bytearray(data)
        at = int(rng.integers(0, len(data) - 8))
        damaged[at:at + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        path = tmp_path / f"damaged-{case}.h5"
        path.write_bytes(bytes(damaged))
        try:
            replay.ReplayBuffer.load(path)
            outcomes["read"] += 1
        except MbiapoError as e:
            assert "\n" not in str(e) and str(path) in str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["read"] > 0, outcomes
