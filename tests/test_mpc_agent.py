"""Sequence planners wired into the agent and commands: MPC acting in training
(``train.act_planner``), the trained planner as the prior, the compiled H-step score,
compare's H-step score column, and ``--true-model``."""

import numpy as np
import pytest
import torch

from mbiapo.agent import Agent
from mbiapo.errors import MbiapoError
from mbiapo.planners import sequence_planners, untrained_planners
from tests.helpers import error_line, run_cli

SMALL = ["planner.population=16", "planner.elites=4", "planner.prior_samples=2",
         "planner.iters=2", "planner.horizon=3"]


def _mb(tiny_cfg, planner="direct", **extra):
    return Agent(tiny_cfg(planner, **{"value.kind": "model-based", **extra}), 4, 1)


def test_a_sequence_planner_cannot_be_the_trained_planner(tiny_cfg):
    with pytest.raises(MbiapoError, match="--act-planner mppi-seq"):
        Agent(tiny_cfg("mppi-seq", **{"value.kind": "model-based"}), 4, 1)


def test_act_planner_acts_with_mpc_and_its_settings(tiny_cfg):
    """train.act_planner makes act() plan sequences (a plan with next_init), with the
    trained planner still the one that trains; act_overrides set its horizon."""
    agent = _mb(tiny_cfg, **{"train.act_planner": "mppi-seq",
                             "train.act_overrides": "[" + ",".join(SMALL) + "]"})
    assert agent.planner is not agent.act_planner and agent.planner.trainable
    obs = np.zeros(4, np.float32)
    action, plan = agent.act_planned(obs)
    assert action.shape == (1,) and -1 <= action[0] <= 1
    assert plan.next_init[0].shape == (1, 3, 1)  # planner.horizon=3 from act_overrides
    _, own = agent.act_planned(obs, planner=agent.planner)
    assert own.next_init is None


def test_act_planner_errors(tiny_cfg):
    with pytest.raises(MbiapoError, match="--value model-based"):
        Agent(tiny_cfg("direct", **{"train.act_planner": "mppi-seq"}), 4, 1)
    with pytest.raises(MbiapoError, match="without train.act_planner"):
        Agent(tiny_cfg("direct", **{"train.act_overrides": "[planner.horizon=3]"}), 4, 1)
    with pytest.raises(MbiapoError, match="unknown"):
        _mb(tiny_cfg, **{"train.act_planner": "mppi-seq",
                         "train.act_overrides": "[planner.bogus=3]"})


def test_online_training_warm_starts_mpc_acting_within_episodes(tiny_cfg, tmp_path,
                                                                monkeypatch):
    """The training loop passes each step's next_init to the next step of the same episode
    and starts every episode clean."""
    from mbiapo.train import start_run

    cfg = tiny_cfg("direct", **{"value.kind": "model-based", "train.steps": 60,
                                "value.model_pretrain": 10,
                                "train.warmup_steps": 50, "train.act_planner": "mppi-seq",
                                "train.act_overrides": "[" + ",".join(SMALL) + "]",
                                "env.max_episode_steps": 4, "train.eval_every": 1000,
                                "train.checkpoint_every": 0, "train.save_replay": False})
    trainer = start_run(cfg, tmp_path / "run")
    calls = []
    act_planned = trainer.agent.act_planned

    def recording(obs, deterministic=False, planner=None, iters=None, init=None):
        actions, plan = act_planned(obs, deterministic, planner, iters, init)
        calls.append((init, plan.next_init))
        return actions, plan

    monkeypatch.setattr(trainer.agent, "act_planned", recording)
    trainer.run()
    # steps 51..60 act (then the final evaluation); episodes of 4 steps end after steps 52,
    # 56 and 60
    calls = calls[:10]
    starts = [i for i, (init, _) in enumerate(calls) if init is None]
    assert starts == [0, 2, 6]
    for i in range(1, len(calls)):
        if i not in starts:
            assert calls[i][0] is calls[i - 1][1]


def test_compiled_h_step_score_matches_the_eager_one(tiny_cfg):
    """compile_value_gradient also compiles the H-step score through the learned model: the
    same scores (with and without the terminal value) as eager, from the same random
    numbers."""
    import torch._dynamo
    import torch._inductor.config

    agent = _mb(tiny_cfg, **{"value.model_members": 3, "value.model_elites": 2})
    obs, actions = torch.randn(2, 4), torch.rand(2, 5, 3, 1) * 2 - 1

    def scores():
        out = []
        for terminal in (True, False):
            torch.manual_seed(1)
            sequence = agent.objective(obs, 1.0, 4).sequence
            out.append(sequence.score(actions, terminal))
        return sequence, out

    torch._dynamo.reset()
    with torch._inductor.config.patch(fallback_random=True):
        eager, expected = scores()
        agent.compile_value_gradient()
        compiled, results = scores()
    assert eager.given_score is None and compiled.given_score is not None
    assert not torch.allclose(expected[0], expected[1])  # the terminal value matters
    for value, reference in zip(results, expected):
        torch.testing.assert_close(value, reference, atol=1e-5, rtol=1e-4)


def test_compare_lists_sequence_planners_only_where_there_is_a_model(tiny_cfg):
    from mbiapo.analyses.calls import default_planners

    assert not set(sequence_planners()) & set(untrained_planners())
    model_free = Agent(tiny_cfg("direct"), 4, 1)
    assert default_planners(model_free) == ["direct", *untrained_planners()]
    assert set(sequence_planners()) <= set(default_planners(_mb(tiny_cfg)))


def test_compare_reports_the_h_step_score_of_sequence_planners(tiny_cfg):
    from mbiapo.analyses.common import agent_objective
    from mbiapo.analyses.compare import compare, summarize, table

    agent = _mb(tiny_cfg)
    planners = {"direct": agent.planner, "mppi-seq": agent.planner_named("mppi-seq", SMALL)}
    obs = torch.randn(3, 4)
    traces = compare(planners, agent_objective(agent, None, None),
                     agent_objective(agent, None, 8), obs, 2)
    summary = summarize(traces, "direct")["planners"]
    assert summary["direct"]["h_step_score"] is None
    score = traces["mppi-seq"].score
    assert score.shape == (3,) and torch.isfinite(score).all()
    assert summary["mppi-seq"]["h_step_score"]["mean"] == pytest.approx(score.mean().item())
    assert summary["mppi-seq"]["ms_per_state"] > 0
    assert "H-step score" in table({"reference": None, "planners": summary})


@pytest.fixture(scope="module")
def ip_checkpoint(tmp_path_factory):
    """A tiny model-free InvertedPendulum checkpoint (untrained beyond warm-up)."""
    from mbiapo.train import start_run
    from tests.helpers import tiny_config

    out = tmp_path_factory.mktemp("mpc") / "run"
    start_run(tiny_config("direct", extra=["train.steps=60", "train.save_replay=false"]),
              out).run()
    return out


def test_true_model_plans_through_the_simulator(ip_checkpoint, capsys):
    """With the simulator as the model, CEM over sequences balances the pendulum for the
    whole (short) episode from a checkpoint that cannot; without a model it is one line."""
    import json

    flags = ["--checkpoint", ip_checkpoint, "--episodes", "2", "--json", "--seed", "3"]
    code, out, _ = run_cli(capsys, "evaluate", *flags, "--env", "InvertedPendulum-v5")
    own = json.loads(out)["return_mean"]
    code, out, err = run_cli(capsys, "evaluate", *flags, "--true-model", "--planner", "cem-seq",
                             "planner.population=32", "planner.elites=4",
                             "planner.prior_samples=0", "planner.iters=3",
                             "planner.horizon=8", "planner.terminal_value=false")
    assert code == 0, err
    result = json.loads(out)
    assert result["planner"] == "cem-seq" and result["return_mean"] == 50.0 > own
    line = error_line(capsys, "evaluate", *flags, "--planner", "mppi-seq")
    assert "--true-model" in line


def test_true_model_flag_errors(ip_checkpoint, capsys):
    line = error_line(capsys, "plan", "--checkpoint", ip_checkpoint, "--true-model",
                      "--model-based", "--planner", "mppi-seq")
    assert "--true-model and --model-based" in line
