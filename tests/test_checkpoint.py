from pathlib import Path

import numpy as np
import pytest
import torch

from mbiapo.checkpoint import load_agent, read_checkpoint, save_checkpoint
from mbiapo.errors import MbiapoError
from mbiapo.replay import ReplayBuffer
from mbiapo.train import resume_run, start_run


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("planner", "value"), [("direct", "model-free"),
                                               ("iterative", "model-free"),
                                               ("direct", "model-based")])
def test_checkpoint_round_trip_is_exact(tmp_path, tiny_cfg, planner, value):
    model_keys = {"value.model_pretrain": 5, "value.model_hidden": 32} \
        if value == "model-based" else {}
    cfg = tiny_cfg(planner, **{"train.steps": 120, "value.kind": value, **model_keys})
    trainer = start_run(cfg, tmp_path / "run")
    trainer.run()
    agent, payload = load_agent(tmp_path / "run" / "checkpoint.pt")
    assert payload["step"] == 120 and payload["env_id"] == "InvertedPendulum-v5"
    assert _states_equal(agent.state_dict(), trainer.agent.state_dict())
    if value == "model-based":  # model, normalizer statistics and rollout policy included
        assert any(k.startswith("estimator.model.obs_norm") for k in agent.state_dict())
        assert agent.estimator.model.obs_norm.count > 0
    saved_opts = trainer.agent.optimizer_state()
    assert saved_opts.keys() == agent.optimizers().keys()
    for name, opt in agent.optimizers().items():
        saved = saved_opts[name]["state"]
        assert saved and all(_states_equal(saved[i], opt.state_dict()["state"][i])
                             for i in saved)
    obs = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    torch.manual_seed(3)
    before = trainer.agent.act(obs, deterministic=True)
    torch.manual_seed(3)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), before)


def test_resume_continues_from_the_same_step_with_the_same_buffer(tmp_path, tiny_cfg):
    out = tmp_path / "run"
    first = start_run(tiny_cfg("direct", **{"train.steps": 150}), out)
    first.run()
    saved_rng = first.rng.bit_generator.state
    resumed = resume_run(out, steps=260)
    assert (resumed.step, resumed.episodes, resumed.updates) == (
        first.step, first.episodes, first.updates)
    assert resumed.rng.bit_generator.state == saved_rng
    for name in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_array_equal(resumed.buffer.chronological(name),
                                      first.buffer.chronological(name))
    assert len(resumed.buffer) == 150 and resumed.buffer.ptr == 150  # grown for 260 steps
    resumed.run()
    assert resumed.step == 260 and len(resumed.buffer) == 260
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == [
        "100", "150", "200", "260"]


def test_replay_ring_buffer_round_trip_keeps_positions(tmp_path):
    buf = ReplayBuffer(obs_dim=2, act_dim=1, capacity=5)
    for i in range(8):  # wraps around: holds steps 3..7, next write at position 3
        buf.add([i, i], [i / 10], i, [i + 1, i + 1], i == 7, False)
    buf.save(tmp_path / "r.h5", {"env_id": "X"})
    loaded = ReplayBuffer.load(tmp_path / "r.h5")
    assert loaded.ptr == buf.ptr == 3 and len(loaded) == 5
    for name, arr in buf.data.items():
        np.testing.assert_array_equal(loaded.data[name], arr)
    np.testing.assert_array_equal(loaded.chronological("rewards"), [3, 4, 5, 6, 7])


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(MbiapoError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(MbiapoError, match="not a readable mbiapo checkpoint"):
        read_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(MbiapoError, match="not an mbiapo checkpoint"):
        read_checkpoint(foreign)


def test_checkpoint_writes_are_atomic(tmp_path, tiny_cfg):
    from mbiapo.agent import Agent

    agent = Agent(tiny_cfg(), 4, 1)
    path = tmp_path / "c.pt"
    save_checkpoint(path, agent, {"step": 1})
    assert path.exists() and not (tmp_path / "c.pt.tmp").exists()


def test_checkpoint_with_foreign_weights_is_a_clear_error(tmp_path, tiny_cfg):
    from mbiapo.agent import Agent

    path = tmp_path / "c.pt"
    save_checkpoint(path, Agent(tiny_cfg(), 4, 1), {"step": 0})
    payload = torch.load(path, weights_only=True)
    payload["agent"]["planner.net.extra"] = payload["agent"].pop("planner.net.net.0.weight")
    torch.save(payload, path)
    with pytest.raises(MbiapoError, match="does not match .* Missing key.*net.net.0.weight"):
        load_agent(path)


def test_divergence_stops_training_without_overwriting_the_checkpoint(tmp_path, tiny_cfg):
    trainer = start_run(tiny_cfg("direct", **{"train.steps": 100}), tmp_path / "run")
    trainer.run()
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    resumed = resume_run(tmp_path / "run", steps=200)
    nan = torch.tensor(float("nan"))
    resumed.agent.update = lambda batch: {"q_loss": nan, "objective": nan, "entropy": nan,
                                          "alpha": nan}
    with pytest.raises(MbiapoError, match="training diverged before step 200"):
        resumed.run()
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


FORMAT1 = Path(__file__).parent / "data" / "format1"


@pytest.mark.parametrize("name", ["iterative-model-free", "direct-model-based"])
def test_format1_checkpoints_load_and_compute_what_they_computed(name):
    """Checkpoints of mbiapo 0.1 (stacked w<i>/b<i> tensors, written by
    data/format1/make_format1.py with that version) load into the plain modules: every
    network gives the outputs 0.1 recorded, and the Adam states follow their parameters."""
    agent, payload = load_agent(FORMAT1 / f"{name}.pt")
    expected = torch.load(FORMAT1 / f"{name}.expected.pt")
    obs, act, lambdas = expected["obs"], expected["act"], expected["lambdas"]
    with torch.no_grad():
        torch.testing.assert_close(agent.q(obs, act), expected["q"])
        torch.testing.assert_close(agent.q_target(obs, act), expected["q_target"])
        planned = (agent.planner.net(obs, *lambdas) if agent.cfg.planner.name == "iterative"
                   else agent.planner.net(obs))
        torch.testing.assert_close(torch.stack(planned), expected["planner"])
        torch.testing.assert_close(
            torch.stack([agent.q_opt.state[p]["exp_avg_sq"].sum() for p in agent.q.parameters()]),
            expected["adam_q"])
        if agent.cfg.value.kind == "model-based":
            model, rollout = agent.estimator.model, agent.estimator.rollout
            pred = model(obs, act)
            torch.testing.assert_close(torch.cat([pred.next_obs, pred.reward[:, None]], 1),
                                       expected["model"])
            torch.testing.assert_close(torch.stack(rollout(obs)), expected["rollout"])
            # the split norm parameters' moments are slices of the stacked ones: totals agree,
            # and each moment has its parameter's shape
            params = [*model.parameters(), *rollout.parameters()]
            states = [agent.optimizers()["model"].state[p] for p in params]
            assert all(s["exp_avg"].shape == p.shape for s, p in zip(states, params))
            torch.testing.assert_close(sum(s["exp_avg_sq"].sum() for s in states),
                                       expected["adam_model"].sum())
            torch.testing.assert_close(sum(p.sum() for p in params),
                                       expected["model_param_sums"].sum())
    rng = np.random.default_rng(0)
    batch = {"obs": torch.randn(8, 3), "act": torch.rand(8, 2) * 2 - 1, "rew": torch.randn(8),
             "next_obs": torch.randn(8, 3), "done": torch.zeros(8),
             "model_weight": torch.ones(8)}
    assert np.isfinite(agent.update(batch)["q_loss"].item())  # training goes on from it
    assert agent.act(rng.standard_normal(3).astype(np.float32)).shape == (2,)
    assert payload["format_version"] == 1
