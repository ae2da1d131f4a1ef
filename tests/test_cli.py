"""Command-line contract: results on stdout, one error line and exit 2 on bad input."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mbiapo.cli import main
from mbiapo.train import start_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from mbiapo.config import compose

    cfg = compose("InvertedPendulum-v5", "direct", overrides=[
        "train.steps=120", "train.warmup_steps=50", "train.eval_every=1000",
        "train.eval_episodes=1", "planner.hidden=32", "value.hidden=32", "train.batch_size=16",
        "env.max_episode_steps=50"])
    out = tmp_path_factory.mktemp("cli") / "run"
    start_run(cfg, out).run()
    return out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mbiapo: error: ")
    return err[0]


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "mbiapo.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("train", "evaluate", "plan", "bench"):
        assert command in out


def test_evaluate_and_plan_print_one_json_object(run_dir, capsys):
    assert main(["evaluate", "--checkpoint", str(run_dir), "--episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 2 and result["planner"] == "direct"
    assert main(["plan", "--checkpoint", str(run_dir / "checkpoint.pt"), "--planner", "cem",
                 "--iters", "2", "--episodes", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["planner"] == "cem" and result["latency_ms_mean"] > 0


def test_train_prints_its_final_metrics_as_json(tmp_path, capsys):
    argv = ["train", "--env", "InvertedPendulum-v5", "--steps", "60", "--out",
            str(tmp_path / "r"), "--json", "train.warmup_steps=50", "train.eval_episodes=1",
            "env.max_episode_steps=20", "planner.hidden=16", "value.hidden=16"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 60 and result["out"] == str(tmp_path / "r")


def test_train_compile_compiles_the_planners_gradient(tmp_path, capsys):
    import torch._dynamo
    from torch._dynamo.utils import counters

    # agents share one compiled function's cache, which stops growing after a limit
    # (torch._dynamo.config.recompile_limit): start from an empty one
    torch._dynamo.reset()
    graphs = counters["stats"]["unique_graphs"]
    argv = ["train", "--env", "InvertedPendulum-v5", "--planner", "iterative", "--steps", "60",
            "--out", str(tmp_path / "r"), "--json", "train.warmup_steps=50",
            "train.eval_episodes=1", "env.max_episode_steps=20", "planner.hidden=16",
            "value.hidden=16", "train.batch_size=16", "train.compile=true"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 60 and math.isfinite(result["q_loss"]), result
    assert counters["stats"]["unique_graphs"] > graphs


def test_train_writes_run_folder(run_dir):
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "metrics.csv",
                                                   "checkpoint.pt", "replay.h5"}


@pytest.mark.parametrize("argv, message", [
    (["train", "--env", "NoSuchEnv-v0", "--out", "{tmp}/x"], "cannot make environment"),
    (["train", "--env", "InvertedPendulum-v5", "--out", "{tmp}/x", "train.nope=1"],
     "unknown config key 'train.nope'"),
    (["train", "--env", "InvertedPendulum-v5", "--out", "{tmp}/x", "train.lr=abc"],
     "train.lr"),
    (["train", "--env", "InvertedPendulum-v5", "--out", "{tmp}/x", "planner.name=foo"],
     "choose one of: direct, iterative, adam, cem"),
    (["train", "--planner", "foo"], "invalid choice"),
    (["evaluate", "--checkpoint", "{tmp}/missing.pt"], "checkpoint not found"),
    (["evaluate"], "required: --checkpoint"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert message in _error_line(capsys)


def test_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x00garbage")
    assert main(["plan", "--checkpoint", str(bad)]) == 2
    assert "not a readable mbiapo checkpoint" in _error_line(capsys)


def test_checkpoint_for_an_env_with_other_sizes(run_dir, tmp_path, capsys):
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    payload["config"]["env"]["id"] = "InvertedDoublePendulum-v5"  # 9/1, trained on 4/1
    torch.save(payload, tmp_path / "other.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "other.pt")]) == 2
    line = _error_line(capsys)
    assert "sizes 4/1" in line and "InvertedDoublePendulum-v5 has 9/1" in line


def test_existing_run_is_never_overwritten(run_dir, capsys):
    before = (run_dir / "checkpoint.pt").read_bytes()
    assert main(["train", "--env", "InvertedPendulum-v5", "--out", str(run_dir)]) == 2
    assert "already holds a run" in _error_line(capsys)
    assert (run_dir / "checkpoint.pt").read_bytes() == before


def test_console_script_exits_nonzero_without_traceback(tmp_path):
    script = Path(sys.executable).with_name("mbiapo")  # the venv's console script
    proc = subprocess.run([str(script), "evaluate", "--checkpoint", str(tmp_path / "none.pt")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
