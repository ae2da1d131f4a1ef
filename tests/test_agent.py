import copy

import numpy as np
import pytest
import torch

from mbiapo.agent import Agent
from mbiapo.errors import MbiapoError
from mbiapo.replay import ReplayBuffer


def _bandit_buffer(rng, n=2000, best=0.5):
    """One-step task: reward -4 (a - best)^2, every transition terminal."""
    buf = ReplayBuffer(obs_dim=2, act_dim=1, capacity=n)
    for _ in range(n):
        obs = rng.standard_normal(2).astype(np.float32)
        a = rng.uniform(-1, 1, 1).astype(np.float32)
        buf.add(obs, a, -4.0 * (a[0] - best) ** 2, obs, True, False)
    return buf


@pytest.mark.parametrize("planner", ["direct", "iterative"])
def test_agent_learns_the_best_action_of_a_bandit(tiny_cfg, planner):
    cfg = tiny_cfg(planner, **{"train.lr": 3e-3, "train.batch_size": 64})
    agent = Agent(cfg, obs_dim=2, act_dim=1)
    rng = np.random.default_rng(0)
    buf = _bandit_buffer(rng)
    for _ in range(300):
        metrics = agent.update(buf.sample(64, rng))
    obs = rng.standard_normal((16, 2)).astype(np.float32)
    actions = agent.act(obs, deterministic=True)
    assert actions.shape == (16, 1)
    assert np.abs(actions - 0.5).max() < 0.15, actions.ravel()
    assert metrics["q_loss"] < 0.5
    # temperature adapts: the entropy of a 1-D action is pushed towards -1
    assert metrics["alpha"] < 1.0


def test_critic_target_stops_bootstrapping_at_terminations_only(tiny_cfg):
    cfg = tiny_cfg("direct", **{"value.beta_train": 1.0, "train.init_alpha": 1e-9})
    agent = Agent(cfg, obs_dim=2, act_dim=1)
    output = agent.q_target.net[-1]
    torch.nn.init.zeros_(output.weight)
    torch.nn.init.constant_(output.bias, 7.0)  # Q_targ == 7 everywhere
    batch = {"obs": torch.zeros(4, 2), "act": torch.zeros(4, 1), "rew": torch.full((4,), 2.0),
             "next_obs": torch.zeros(4, 2), "done": torch.tensor([1.0, 0.0, 1.0, 0.0])}
    y = agent.critic_target(batch)
    # y = r (terminal) or r + gamma (Q_targ - alpha log pi) with alpha ~ 0
    torch.testing.assert_close(y, torch.tensor([2.0, 2.0 + 0.99 * 7.0, 2.0, 2.0 + 0.99 * 7.0]))


def test_critic_step_uses_the_gradient_of_the_regression_loss(tiny_cfg):
    """The critic's gradient is that of 0.5 sum_i mean_b (Q_i - y)^2, and nothing else
    reaches the Q parameters (Adam would hide a wrong scale, so the gradient itself is
    checked)."""
    agent = Agent(tiny_cfg("direct"), obs_dim=2, act_dim=1)
    reference = copy.deepcopy(agent.q)
    rng = np.random.default_rng(0)
    batch = _bandit_buffer(rng, 100).sample(16, rng)
    target = torch.randn(16)
    agent.critic_target = lambda batch, next_dist=None: target
    metrics = agent.update(batch)
    loss = 0.5 * (reference(batch["obs"], batch["act"]) - target).pow(2).mean(1).sum()
    torch.testing.assert_close(metrics["q_loss"], loss.detach())
    for param, expected in zip(agent.q.parameters(),
                               torch.autograd.grad(loss, list(reference.parameters()))):
        torch.testing.assert_close(param.grad, expected)


def test_update_plans_the_critic_targets_next_states_with_the_trained_ones(tiny_cfg):
    """A model-free update plans obs and next_obs in one call, before any parameter moves:
    the critic target bootstraps with the planner's distributions at next_obs."""
    agent = Agent(tiny_cfg("direct"), obs_dim=2, act_dim=1)
    rng = np.random.default_rng(0)
    batch = _bandit_buffer(rng, 100).sample(16, rng)
    batch["next_obs"] = torch.randn(16, 2)
    with torch.no_grad():
        expected_mu, expected_log_std = agent.planner.net(batch["next_obs"])
    seen = []
    critic_target = agent.critic_target
    agent.critic_target = lambda batch, next_dist=None: seen.append(next_dist) or critic_target(
        batch, next_dist)
    agent.update(batch)
    torch.testing.assert_close(seen[0].mu, expected_mu)
    torch.testing.assert_close(seen[0].log_std, expected_log_std)


def test_untrained_planner_names_are_clear(tiny_cfg):
    agent = Agent(tiny_cfg("direct"), obs_dim=2, act_dim=1)
    cem = agent.planner_named("cem")
    assert cem.trainable is False and cem.iters == 100 and cem.elites == 10  # paper B.4
    assert agent.planner_named("adam").lr == 0.01
    assert agent.planner_named(None) is agent.planner
    with pytest.raises(MbiapoError, match="no trained 'iterative' planner"):
        agent.planner_named("iterative")


@pytest.mark.parametrize("planner", ["adam", "cem"])
def test_agents_can_act_and_update_with_untrained_planners(tiny_cfg, planner):
    agent = Agent(tiny_cfg(planner, **{"planner.iters": 3}), obs_dim=2, act_dim=1)
    rng = np.random.default_rng(0)
    metrics = agent.update(_bandit_buffer(rng, 100).sample(8, rng))
    assert np.isfinite(metrics["q_loss"].item())
    assert agent.act(np.zeros(2, np.float32)).shape == (1,)


def test_small_batches_plan_on_one_thread_and_restore_the_setting(tiny_cfg):
    """Acting on a few states runs on one intra-op thread (a second one only waits at
    batch 1); large batches keep the configured count, and the setting is restored."""
    from mbiapo.agent import SMALL_BATCH

    agent = Agent(tiny_cfg("direct"), obs_dim=2, act_dim=1)
    seen = []

    def value(obs, actions, beta):
        seen.append(torch.get_num_threads())
        return -(actions**2).sum(-1)

    agent.value = value
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        agent.act(np.zeros(2, np.float32), planner=agent.planner_named("adam"), iters=2)
        agent.act(np.zeros((SMALL_BATCH + 1, 2), np.float32),
                  planner=agent.planner_named("adam"), iters=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen[0] == 1 and seen[-1] == 2
