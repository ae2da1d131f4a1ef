"""The stable-baselines3 SAC peer: trained with the run config's settings, evaluated on
mbiapo's evaluation seeds, written as a run folder that ``report`` sets beside mbiapo's
runs, and planned by sweeps (or left out in one line without stable-baselines3)."""

import json

import numpy as np
import pytest
import yaml

from mbiapo import peer
from mbiapo.config import compose
from mbiapo.report import read_rows, report
from mbiapo.sweep import load_sweep, plan_runs
from tests.helpers import error_line, run_cli

pytest.importorskip("stable_baselines3")
IP = "InvertedPendulum-v5"
TINY = ["train.warmup_steps=100", "train.eval_every=100", "train.eval_episodes=2",
        "train.batch_size=32", "planner.hidden=32", "value.hidden=32",
        "env.max_episode_steps=50"]


def test_the_config_reaches_sb3_as_it_says(tmp_path, monkeypatch):
    import stable_baselines3

    built = {}
    real = stable_baselines3.SAC

    def spy(*args, **kwargs):
        built.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(stable_baselines3, "SAC", spy)
    cfg = compose(IP, "direct", overrides=[*TINY, "train.steps=200", "train.lr=0.002",
                                            "train.gamma=0.9", "train.tau=0.01",
                                            "train.init_alpha=0.3", "planner.layers=3",
                                            "value.members=3", "train.updates_per_step=2"])
    peer.train(cfg, tmp_path / "run")
    assert (built["learning_rate"], built["batch_size"], built["gamma"], built["tau"]) == \
        (0.002, 32, 0.9, 0.01)
    assert (built["learning_starts"], built["gradient_steps"], built["ent_coef"]) == \
        (100, 2, "auto_0.3")
    assert built["policy_kwargs"]["net_arch"] == {"pi": [32, 32, 32], "qf": [32, 32]}
    assert built["policy_kwargs"]["n_critics"] == 3 and built["seed"] == 0
    rows = read_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [100, 200]
    assert rows[-1]["updates"] == 2 * (200 - 100) - 2  # SB3 updates after learning_starts


def test_evaluation_uses_mbiapo_evaluation_seeds(monkeypatch):
    """A constant policy on seeded episodes: the peer's evaluation equals mbiapo's own."""
    from mbiapo import evaluate as mbiapo_evaluate
    from mbiapo.agent import Agent
    from mbiapo.trainer import EVAL_SEED

    cfg = compose(IP, "direct", overrides=[*TINY, "train.seed=3", "train.eval_episodes=3"])
    zero = np.zeros(1, np.float32)
    returns = peer.evaluate(lambda obs: zero, cfg)

    class Still:
        def act_planned(self, obs, *args):
            return np.zeros((len(obs), 1), np.float32), type("P", (), {"next_init": None})

    agent = Agent(cfg, 4, 1)
    monkeypatch.setattr(agent, "act_planned", Still().act_planned)
    ours = mbiapo_evaluate.run_episodes(agent, IP, 3, EVAL_SEED + 3, max_episode_steps=50)
    assert returns.tolist() == ours["returns"] and len(set(ours["returns"])) > 1


def test_a_peer_run_sits_beside_mbiapo_runs_in_the_report(tmp_path, capsys):
    code, out, err = run_cli(capsys, "peer", "sb3-sac", "--env", IP, "--steps", "200",
                             "--out", tmp_path / "runs" / "peer", "--json", *TINY)
    assert code == 0, err
    assert json.loads(out)["step"] == 200
    code, _, err = run_cli(capsys, "train", "--env", IP, "--steps", "200", "--out",
                           tmp_path / "runs" / "direct", *TINY)
    assert code == 0, err
    methods = {m["method"]: m for m in report(tmp_path / "runs")["methods"]}
    assert set(methods) == {"direct", "sb3-sac"}
    assert methods["sb3-sac"]["steps"] == methods["direct"]["steps"] == [100, 200]


def test_an_unfinished_peer_run_starts_over_and_other_folders_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "peer", "sb3-sac", "--env", IP, "--steps", "100", "--out", out,
                   *TINY)[0] == 0
    # the same config with more steps: starts over in the folder
    assert run_cli(capsys, "peer", "sb3-sac", "--env", IP, "--steps", "200", "--out", out,
                   *TINY)[0] == 0
    assert [r["step"] for r in read_rows(out)] == [100, 200]
    line = error_line(capsys, "peer", "sb3-sac", "--env", IP, "--steps", "200", "--out", out,
                      *TINY, "train.lr=0.01")
    assert "another config (train.lr)" in line
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    line = error_line(capsys, "peer", "sb3-sac", "--env", IP, "--out", tmp_path / "mine",
                      *TINY)
    assert "not empty (notes.txt)" in line
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_a_sweep_plans_peer_runs_per_env_and_seed(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "overrides": TINY, "grid": {"env.id": [IP, "Hopper-v5"],
                                    "planner.name": ["direct", "iterative"]},
        "seeds": [0, 1], "steps": 300, "peers": ["sb3-sac"]}))
    runs = plan_runs(load_sweep(path), tmp_path / "out")
    peers = [r for r in runs if r.args[0] == "peer"]
    assert len(runs) == 8 + 4 and [r.name for r in peers] == [
        f"{env}_sb3-sac_s{s}" for env in (IP, "Hopper-v5") for s in (0, 1)]
    assert peers[0].cfg.train.steps == 300 and peers[0].cfg.train.eval_every == 100
    assert all(r.action == "start" for r in peers)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"grid": {"env.id": [IP]}, "peers": ["ppo"]}))
    with pytest.raises(Exception, match="'peers' must be a list of: sb3-sac"):
        load_sweep(bad)


def test_without_stable_baselines3_a_sweep_says_so_and_runs_the_rest(tmp_path, capsys,
                                                                      monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setattr(peer, "available", lambda: False)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"overrides": TINY, "grid": {"env.id": [IP]},
                                    "seeds": [0], "steps": 100, "peers": ["sb3-sac"]}))
    code, out, err = run_cli(capsys, "sweep", path, "--out", tmp_path / "out",
                             "--num-cpus", 1, "--json")
    assert code == 0, err
    assert "needs stable-baselines3" in err and "its 1 runs are left out" in err
    assert [r["name"] for r in json.loads(out)["runs"]] == [f"{IP}_s0"]
