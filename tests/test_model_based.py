import math

import numpy as np
import pytest
import torch

from mbiapo.agent import Agent
from mbiapo.models.world_model import Prediction, WorldModel
from mbiapo.replay import HOLDOUT_EVERY, ReplayBuffer
from mbiapo.value import ModelFreeValue, retrace_estimate

# A tiny deterministic system, 1-D state and action:
#   s' = s + a,  r(s, a) = s - a^2,  Q(s, a) = s + a,  rollout policy a = -s/2 with
#   log pi = 0.3,  alpha = 0.5 (so alpha log pi = 0.15),  gamma = 0.9,  start s0 = 1, a0 = 0.5.
# By hand along the rollout:
#   t   s_t     a_t       r_t        Q_t      V_t = Q_t - 0.15
#   0   1       0.5       0.75       1.5      -
#   1   1.5    -0.75      0.9375     0.75     0.6
#   2   0.75   -0.375     0.609375   0.375    0.225
#   3   0.375  -0.1875    -          0.1875   0.0375
# delta_t = r_t + gamma V_{t+1} - Q_t:
#   delta_0 = 0.75 + 0.54 - 1.5 = -0.21
#   delta_1 = 0.9375 + 0.2025 - 0.75 = 0.39
#   delta_2 = 0.609375 + 0.03375 - 0.375 = 0.268125
# estimate = Q_0 + sum_{t<h} (gamma lam)^t delta_t:
HAND = {
    # lam = 0: r_0 + gamma V_1 = 0.75 + 0.9 * 0.6, whatever the horizon
    (0.0, 1): 1.29, (0.0, 2): 1.29, (0.0, 3): 1.29,
    # lam = 0.9: 1.5 - 0.21 + 0.81 * 0.39 + 0.6561 * 0.268125
    (0.9, 1): 1.29, (0.9, 2): 1.6059, (0.9, 3): 1.6059 + 0.6561 * 0.268125,
    # lam = 1: h-step soft return plus bootstrap, e.g. h = 2:
    # r_0 + gamma r_1 + gamma^2 V_2 - gamma alpha log pi(a_1) = 0.75 + 0.84375 + 0.18225 - 0.135
    (1.0, 1): 1.29, (1.0, 2): 1.641,
    (1.0, 3): 0.75 + 0.84375 + 0.81 * 0.609375 + 0.729 * 0.0375 - 0.135 - 0.81 * 0.15,
}


def _tiny_system(cont_after: list[float] | None = None):
    calls = []

    def step(s, a):
        cont = cont_after[len(calls)] if cont_after else 1.0
        calls.append(1)
        return Prediction(s + a, s - a**2, torch.full_like(s, cont))

    def q(s, a):
        return s + a

    def policy(s):
        return -0.5 * s, torch.full_like(s, 0.3)

    return q, step, policy


@pytest.mark.parametrize(("lam", "horizon"), sorted(HAND))
def test_retrace_matches_hand_computed_values(lam, horizon):
    q, step, policy = _tiny_system()
    est = retrace_estimate(q, step, policy, torch.tensor([1.0]), torch.tensor([0.5]),
                           alpha=0.5, gamma=0.9, lam=lam, horizon=horizon)
    torch.testing.assert_close(est, torch.tensor([HAND[lam, horizon]], dtype=torch.float32))


@pytest.mark.parametrize("lam", [0.0, 0.9, 1.0])
def test_retrace_stops_bootstrapping_after_a_predicted_termination(lam):
    # the first model step ends the episode: the estimate is r_0 = 0.75 for any h and lambda
    q, step, policy = _tiny_system(cont_after=[0.0, 1.0, 1.0])
    est = retrace_estimate(q, step, policy, torch.tensor([1.0]), torch.tensor([0.5]),
                           alpha=0.5, gamma=0.9, lam=lam, horizon=3)
    torch.testing.assert_close(est, torch.tensor([0.75]))


def test_retrace_with_horizon_zero_is_the_q_estimate():
    q, step, policy = _tiny_system()
    est = retrace_estimate(q, step, policy, torch.tensor([1.0]), torch.tensor([0.5]),
                           alpha=0.5, gamma=0.9, lam=0.9, horizon=0)
    torch.testing.assert_close(est, torch.tensor([1.5]))


def _mb_agent(tiny_cfg, planner="direct", **extra):
    return Agent(tiny_cfg(planner, **{"value.kind": "model-based", **extra}), obs_dim=3,
                 act_dim=2)


def test_model_based_value_with_horizon_zero_equals_the_model_free_value(tiny_cfg):
    agent = _mb_agent(tiny_cfg, **{"value.horizon": 0})
    obs, actions = torch.randn(5, 3), torch.rand(5, 4, 2) * 2 - 1
    torch.testing.assert_close(agent.value(obs, actions, 1.5),
                               ModelFreeValue(agent.q)(obs, actions, 1.5))


@pytest.mark.parametrize("horizon", [0, 1, 2, 3])
def test_model_based_action_gradient_matches_finite_differences(horizon):
    """d estimate / d actions by autograd through model, rollout policy and ensemble equals
    central differences (float64, the same rollout-policy draws)."""
    from mbiapo.models.policy_nets import DirectPolicyNet
    from mbiapo.models.q_ensemble import QEnsemble
    from mbiapo.value import ModelBasedValue

    torch.manual_seed(0)
    obs_dim, act_dim = 5, 3
    model = WorldModel(obs_dim, act_dim, hidden=16)
    with torch.no_grad():  # away from the fresh model's identity statistics and zero outputs
        for norm in (model.obs_norm, model.delta_norm, model.reward_norm):
            norm.mean.normal_()
            norm.var.uniform_(0.5, 2.0)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    value = ModelBasedValue(QEnsemble(obs_dim, act_dim, hidden=16).double(), model.double(),
                            DirectPolicyNet(obs_dim, act_dim, hidden=16).double(),
                            torch.tensor(-1.0, dtype=torch.float64), gamma=0.9, lam=0.8,
                            horizon=horizon)
    obs = torch.randn(2, obs_dim, dtype=torch.float64)
    actions = torch.tanh(torch.randn(2, 3, act_dim, dtype=torch.float64)).requires_grad_(True)

    def estimate(a: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)  # the same rollout-policy draws every time
        return value(obs, a, 1.3)

    grad = torch.autograd.grad(estimate(actions).sum(), actions)[0]
    numeric, h = torch.zeros_like(grad), 1e-6
    with torch.no_grad():
        for i in range(actions.numel()):
            step = torch.zeros(actions.numel(), dtype=torch.float64)
            step[i] = h
            step = step.view_as(actions)
            numeric.view(-1)[i] = ((estimate(actions + step) - estimate(actions - step)).sum()
                                   / (2 * h))
    torch.testing.assert_close(grad, numeric, atol=1e-6, rtol=1e-5)
    assert grad.abs().min() > 0


def test_compiled_objective_gradient_matches_the_eager_one(tiny_cfg):
    """J and its gradient from ``compile_value_gradient`` equal the eager ones, in updates
    (gradients on) and when acting (no_grad), also after alpha changes."""
    import torch._dynamo
    import torch._inductor.config

    agent = _mb_agent(tiny_cfg, "iterative")
    obs, mu, log_std = torch.randn(2, 3), torch.randn(2, 2), 0.3 * torch.randn(2, 2)
    cases = [(1.0, torch.no_grad), (0.5, torch.no_grad), (0.5, torch.enable_grad)]

    def run():
        results = []
        for alpha, mode in cases:
            agent.log_alpha.data.fill_(math.log(alpha))
            with mode():
                torch.manual_seed(3)
                objective = agent.objective(obs, 1.3, 10)
                results.append(objective.value_and_grad(mu, log_std))
        return objective, results

    # fallback_random: compiled code draws eager's random numbers, so both paths agree; the
    # graphs of agents compiled by earlier tests (without it) must not be reused
    torch._dynamo.reset()
    with torch._inductor.config.patch(fallback_random=True):
        eager, expected = run()
        agent.compile_value_gradient()
        compiled, results = run()
    assert eager.given_value_and_grad is None and compiled.given_value_and_grad is not None
    assert not torch.allclose(expected[0][0], expected[1][0])  # alpha matters
    for (value, grads), (value_ref, grads_ref) in zip(results, expected):
        torch.testing.assert_close(value, value_ref, atol=1e-5, rtol=1e-4)
        for a, b in zip(grads, grads_ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("planner", ["direct", "iterative", "adam", "cem"])
def test_every_planner_plans_against_the_model_based_objective(tiny_cfg, planner):
    agent = _mb_agent(tiny_cfg, planner if planner == "iterative" else "direct")
    chosen = agent.planner_named(planner)
    obs = torch.randn(4, 3)
    objective = agent.objective(obs, 1.0, 10)
    value, (g_mu, g_log_std) = objective.value_and_grad(torch.zeros(4, 2), torch.zeros(4, 2))
    assert value.shape == (4,) and g_mu.abs().sum() > 0 and torch.isfinite(g_log_std).all()
    with torch.no_grad():
        plan = chosen.plan(objective, obs, iters=3)
    assert plan.mu.shape == (4, 2) and len(plan.values) >= 1


def _linear_buffer(rng, n=3000, obs_dim=3, act_dim=2):
    """s' = s + 0.1 A a, r = s_0 - |a|^2, terminal when s_1 > 1.5."""
    mix = np.arange(obs_dim * act_dim, dtype=np.float32).reshape(act_dim, obs_dim) / 5 - 0.5
    buf = ReplayBuffer(obs_dim, act_dim, n)
    for _ in range(n):
        s = rng.standard_normal(obs_dim).astype(np.float32)
        a = rng.uniform(-1, 1, act_dim).astype(np.float32)
        s2 = s + 0.1 * a @ mix
        buf.add(s, a, s[0] - (a**2).sum(), s2, bool(s2[1] > 1.5), False)
    return buf


def test_world_model_learns_a_linear_system_and_never_trains_on_held_out_rows(tiny_cfg):
    torch.manual_seed(0)
    agent = _mb_agent(tiny_cfg, **{"train.lr": 3e-3})
    rng = np.random.default_rng(0)
    buf = _linear_buffer(rng)
    batch = buf.sample(64, rng)
    assert (batch["model_weight"] == 0).any()
    for _ in range(600):
        metrics = agent.estimator.update(buf.sample(64, rng))
    held = buf.holdout(1000)
    assert held["model_weight"].sum() == 0 and len(held["obs"]) == 3000 // HOLDOUT_EVERY
    error, no_change = agent.estimator.model.one_step_error(held["obs"], held["act"],
                                                            held["next_obs"])
    assert error < 0.1 * no_change, (error, no_change)
    with torch.no_grad():
        pred = agent.estimator.model(held["obs"], held["act"])
    assert (pred.reward - held["rew"]).abs().mean() < 0.25 * held["rew"].abs().mean()
    # termination: the model separates terminal from non-terminal transitions
    done = held["done"].bool()
    assert pred.cont[done].mean() < 0.5 < pred.cont[~done].mean()
    assert metrics["model_loss"] < 0


def test_held_out_rows_get_no_gradient():
    model = WorldModel(3, 2, hidden=16)
    obs, act, nxt = torch.randn(4, 3), torch.randn(4, 2), torch.randn(4, 3)
    rew, done = torch.randn(4), torch.zeros(4)
    weight = torch.tensor([1.0, 1.0, 0.0, 1.0])
    base = model.loss(obs, act, rew, nxt, done, weight)
    nxt2 = nxt.clone()
    nxt2[2] += 100.0  # changing a held-out row leaves the loss unchanged
    torch.testing.assert_close(model.loss(obs, act, rew, nxt2, done, weight), base)


def test_model_based_agent_update_trains_every_part(tiny_cfg):
    agent = _mb_agent(tiny_cfg, planner="iterative")
    rng = np.random.default_rng(1)
    buf = _linear_buffer(rng, n=500)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    metrics = agent.update(buf.sample(32, rng))
    assert {"model_loss", "distill_kl", "q_loss"} <= metrics.keys()
    after = agent.state_dict()
    for prefix in ("q.", "planner.", "estimator.model.", "estimator.rollout."):
        changed = [k for k in after if k.startswith(prefix) and not torch.equal(after[k],
                                                                                before[k])]
        assert changed, prefix
    assert set(agent.optimizer_state()) == {"q", "policy", "model"}


def test_running_normalizer_matches_the_statistics_of_all_batches():
    from mbiapo.models.normalizer import RunningNormalizer

    norm = RunningNormalizer(2)
    batches = [torch.randn(n, 2) * torch.tensor([3.0, 0.5]) + 4.0 for n in (5, 17, 1, 40)]
    for batch in batches:
        norm.update(batch)
    data = torch.cat(batches)
    torch.testing.assert_close(norm.mean, data.mean(0))
    torch.testing.assert_close(norm.var, data.var(0, correction=0))
    z = norm.normalize(data)
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.denormalize(z), data)
