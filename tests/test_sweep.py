"""``mbiapo sweep``: the sweep file, run planning, and real sweeps on a local 2-CPU Ray."""

import csv
import json
import sys

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from mbiapo.agent import Agent
from mbiapo.checkpoint import save_checkpoint
from mbiapo.errors import MbiapoError
from mbiapo.sweep import RAY_MISSING, load_sweep, plan_runs
from tests.helpers import TINY, error_line, run_cli

ray = pytest.importorskip("ray")


def write_sweep(path, **fields):
    path.write_text(yaml.safe_dump(fields))
    return path


def tiny_sweep(tmp_path, steps=300, envs=("InvertedPendulum-v5",), seeds=(0, 1)):
    return write_sweep(tmp_path / "tiny.yaml", overrides=TINY,
                       grid={"env.id": list(envs), "planner.name": ["direct", "iterative"]},
                       seeds=list(seeds), steps=steps)


def metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def checkpoint_step(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["step"]


def test_runs_are_every_combination_with_its_overrides(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", overrides=["train.lr=0.001"],
                                   grid={"env.id": ["InvertedPendulum-v5", "Hopper-v5"],
                                         "value.beta_train": [1, 3]},
                                   seeds=[4, 5], steps=700))
    runs = plan_runs(sweep, tmp_path / "out")
    names = [r.name for r in runs]
    assert len(runs) == 8 and len(set(names)) == 8
    assert "Hopper-v5_beta_train3_s5" in names
    run = runs[names.index("Hopper-v5_beta_train3_s5")]
    assert (run.cfg.env.id, run.cfg.value.beta_train, run.cfg.train.seed) == ("Hopper-v5", 3, 5)
    assert run.cfg.train.steps == 700 and run.cfg.train.lr == 0.001
    assert run.action == "start" and run.args[:3] == ["train", "--out", str(run.out)]
    # the env's own config file still applies under the grid's override
    assert runs[0].cfg.train.warmup_steps == 1000 and run.cfg.train.warmup_steps == 5000


def test_a_base_config_file_is_relative_to_the_sweep(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  gamma: 0.9\n")
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", base="base.yaml",
                                   grid={"env.id": ["InvertedPendulum-v5"]}))
    (run,) = plan_runs(sweep, tmp_path / "out")
    assert run.cfg.train.gamma == 0.9 and run.name == "InvertedPendulum-v5_s0"
    assert run.args[3:5] == ["--config", str(tmp_path / "base.yaml")]


@pytest.mark.parametrize("fields, message", [
    ({"grid": {"env.id": []}}, "'grid' must map config keys to non-empty lists"),
    ({"grid": {"env.id": ["InvertedPendulum-v5"]}, "seeds": [0, 0]}, "distinct integers"),
    ({"grid": {"env.id": ["InvertedPendulum-v5"]}, "seeds": "0"}, "distinct integers"),
    ({"grid": {"env.id": ["InvertedPendulum-v5"]}, "steps": 0}, "'steps' must be a positive"),
    ({"grid": {"env.id": ["InvertedPendulum-v5"]}, "epochs": 3}, "unknown sweep key(s) epochs"),
    ({"grid": {"env.id": ["InvertedPendulum-v5"]}, "base": "nope.yaml"}, "nope.yaml not found"),
    ({"grid": {"env.id": ["InvertedPendulum-v5"], "train.lrr": [1]}},
     "run InvertedPendulum-v5_lrr1_s0: override: unknown config key 'train.lrr'"),
    ({"grid": {"env.id": ["InvertedPendulum-v5"], "planner.name": ["sgd"]}},
     "unknown planner 'sgd'; choose one of: direct, iterative, adam, cem, mppi"),
    ({"grid": {"env.id": ["My Pendulum", "My/Pendulum"]}}, "two runs would share the folder"),
])
def test_bad_sweep_files_are_one_line(tmp_path, capsys, fields, message):
    path = write_sweep(tmp_path / "bad.yaml", **{"steps": 1, **fields})  # never a long run
    line = error_line(capsys, "sweep", path, "--out", tmp_path / "out")
    assert message in line and "bad.yaml" in line
    assert not (tmp_path / "out").exists()


def test_a_missing_sweep_file_is_one_line(tmp_path, capsys):
    assert "not found" in error_line(capsys, "sweep", tmp_path / "none.yaml")


def planted_run(tmp_path, checkpoint: bytes | None, **train):
    """The folder of the sweep's first run, holding ``checkpoint`` (None: a real one of an
    untrained agent) and its config with ``train`` settings changed."""
    path = tiny_sweep(tmp_path)
    run = plan_runs(load_sweep(path), tmp_path / "out")[0]
    run.out.mkdir(parents=True)
    for key, value in train.items():
        run.cfg.train[key] = value
    if checkpoint is None:
        save_checkpoint(run.out / "checkpoint.pt", Agent(run.cfg, 4, 1), {"step": 0})
    else:
        (run.out / "checkpoint.pt").write_bytes(checkpoint)
    OmegaConf.save(run.cfg, run.out / "config.yaml")
    return path, run.out


def test_a_folder_holding_another_config_stops_the_sweep(tmp_path, capsys):
    """The checkpoint's config is the run's (config.yaml is a copy for people)."""
    path, run = planted_run(tmp_path, None, gamma=0.5, steps=50)
    saved = (run / "checkpoint.pt").read_bytes()
    line = error_line(capsys, "sweep", path, "--out", tmp_path / "out")
    assert f"{run} holds a run with another config" in line
    assert "train.gamma: 0.5 there, 0.99 in the sweep" in line
    assert (run / "checkpoint.pt").read_bytes() == saved


def test_plan_reports_an_unreadable_checkpoint(tmp_path):
    path, run = planted_run(tmp_path, b"junk", steps=50)  # another budget is no conflict
    with pytest.raises(MbiapoError, match="not a readable mbiapo checkpoint"):
        plan_runs(load_sweep(path), tmp_path / "out")


def test_without_ray_sweep_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    line = error_line(capsys, "sweep", tiny_sweep(tmp_path), "--out", tmp_path / "out")
    assert line == f"mbiapo: error: {RAY_MISSING}"


def test_bad_flags_are_one_line(tmp_path, capsys):
    path = tiny_sweep(tmp_path)
    assert ">= 1" in error_line(capsys, "sweep", path, "--cpus-per-run", 0)
    assert "exceeds the 2 CPUs" in error_line(capsys, "sweep", path, "--out", tmp_path / "o",
                                              "--num-cpus", 2, "--cpus-per-run", 3)


def test_two_by_two_sweep_runs_then_skips_then_extends(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "sweep", tiny_sweep(tmp_path), "--out", out,
                              "--num-cpus", 2, "--json")
    result = json.loads(stdout)
    assert code == 0 and [r["status"] for r in result["runs"]] == ["finished"] * 4
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in runs] == [f"InvertedPendulum-v5_{p}_s{s}"
                                      for p in ("direct", "iterative") for s in (0, 1)]
    for run in runs:
        assert {"checkpoint.pt", "config.yaml", "metrics.csv", "replay.h5", "train.log"} \
            <= {p.name for p in run.iterdir()}
        assert checkpoint_step(run) == 300 and metrics(run)[-1]["step"] == "300"
        assert float(metrics(run)[-1]["eval_return_mean"]) > 0
    assert result["sum_run_s"] > 0 and result["speedup"] == pytest.approx(
        result["sum_run_s"] / result["wall_s"])
    before = {run: (run / "checkpoint.pt").stat().st_mtime_ns for run in runs}

    code, stdout, _ = run_cli(capsys, "sweep", tiny_sweep(tmp_path), "--out", out, "--json")
    again = json.loads(stdout)
    assert code == 0 and [r["status"] for r in again["runs"]] == ["skipped"] * 4
    assert {run: (run / "checkpoint.pt").stat().st_mtime_ns for run in runs} == before
    assert again["sum_run_s"] == 0

    # a longer budget resumes every run from its checkpoint instead of retraining it
    first_rows = metrics(runs[0])
    code, stdout, _ = run_cli(capsys, "sweep", tiny_sweep(tmp_path, steps=400), "--out", out,
                              "--num-cpus", 2, "--json")
    assert code == 0 and [r["status"] for r in json.loads(stdout)["runs"]] == ["resumed"] * 4
    rows = metrics(runs[0])
    assert rows[:len(first_rows)] == first_rows and rows[-1]["step"] == "400"
    assert checkpoint_step(runs[0]) == 400
    assert "--resume" in (runs[0] / "train.log").read_text()


def test_a_failed_run_is_reported_and_the_others_finish(tmp_path, capsys):
    path = tiny_sweep(tmp_path, steps=100, envs=("InvertedPendulum-v5", "NoSuchEnv-v0"),
                      seeds=(0,))
    code, stdout, err = run_cli(capsys, "sweep", path, "--out", tmp_path / "out",
                                "--num-cpus", 2)
    assert code == 1
    lines = {line.split()[0]: line for line in stdout.splitlines() if "_s0" in line}
    assert "finished" in lines["InvertedPendulum-v5_direct_s0"]
    assert "failed" in lines["NoSuchEnv-v0_iterative_s0"]
    assert "NoSuchEnv-v0" in lines["NoSuchEnv-v0_direct_s0"].split("failed", 1)[1]
    assert checkpoint_step(tmp_path / "out" / "InvertedPendulum-v5_iterative_s0") == 100
    status = {r["name"]: r["status"] for r in
              json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"]}
    assert sorted(status.values()) == ["failed", "failed", "finished", "finished"]




def test_cases_add_overrides_where_a_run_matches(tmp_path, capsys):
    """The paper-scale sweep's Table 5: architecture B only where the paper used it."""
    from pathlib import Path

    paper = Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "paper-fig5.yaml"
    runs = {r.name: r.cfg for r in plan_runs(load_sweep(paper), tmp_path / "out")}
    assert len(runs) == 40
    assert runs["HalfCheetah-v5_direct_s0"].value.hidden == 512
    assert runs["HalfCheetah-v5_direct_s0"].value.activation == "elu"
    assert runs["HalfCheetah-v5_iterative_s0"].value.hidden == 256
    assert runs["Walker2d-v5_iterative_s3"].value.layers == 3
    assert runs["Walker2d-v5_direct_s3"].value.layers == 2
    assert runs["Hopper-v5_iterative_s1"].value.beta_train == 1.5
    assert runs["Ant-v5_iterative_s1"].value.beta_train == 2.5
    assert runs["Ant-v5_direct_s4"].train.steps == 3_000_000
    bad = write_sweep(tmp_path / "bad.yaml", grid={"env.id": ["Hopper-v5"]},
                      cases=[{"match": {"env.id": "Ant-v5"}, "overrides": ["train.lr=1"]}])
    assert "which the grid does not have" in error_line(capsys, "sweep", bad)
