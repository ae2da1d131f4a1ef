import math

import pytest
import torch

from mbiapo.planners import AdamPlanner, CEMPlanner, DirectPlanner, IterativePlanner, MPPIPlanner
from tests.synthetic import HiddenTargets, quadratic_objective


def _targets(b=16, a=3):
    return torch.rand(b, a) * 1.4 - 0.7


@pytest.mark.parametrize("planner", [AdamPlanner(1, act_dim=3, iters=2000, lr=0.01),
                                     CEMPlanner(1, act_dim=3, iters=40),
                                     MPPIPlanner(1, act_dim=3, iters=100)])
def test_untrained_planners_reach_the_known_optimum(planner):
    target = _targets()
    objective = quadratic_objective(target, samples=10)
    obs = torch.zeros(16, 1)
    plan = planner.plan(objective, obs)
    assert plan.mu.shape == plan.log_std.shape == (16, 3)
    assert len(plan.values) == len(plan.seconds) == planner.iters
    assert (torch.tanh(plan.mu) - target).abs().max() < 0.05
    # J reaches the best value on a grid of sigmas around mu* = atanh(target)
    exact = quadratic_objective(target, samples=4000)
    mu_star = torch.atanh(target)
    best = max(exact(mu_star, torch.full_like(mu_star, s)).mean().item()
               for s in torch.arange(-6.0, -1.0, 0.25).tolist())
    start = exact(torch.zeros(16, 3), torch.zeros(16, 3)).mean().item()
    final = exact(plan.mu, plan.log_std).mean().item()
    assert start < best - 10 and final > best - 0.05, (start, final, best)
    assert all(b >= a for a, b in zip(plan.seconds, plan.seconds[1:]))


def test_cem_refits_in_pre_tanh_space_so_it_reaches_large_actions():
    target = torch.full((4, 2), 0.95)  # tanh(u) = 0.95 needs u = 1.83
    plan = CEMPlanner(1, act_dim=2, iters=40).plan(quadratic_objective(target), torch.zeros(4, 1))
    assert (torch.tanh(plan.mu) > 0.9).all()


def test_record_false_skips_trace_when_acting():
    objective = quadratic_objective(_targets(2, 3))
    obs = torch.zeros(2, 1)
    with torch.no_grad():
        assert CEMPlanner(1, 3, iters=3).plan(objective, obs, record=False).values == []
        assert DirectPlanner(1, 3).plan(objective, obs, record=False).values == []
        assert AdamPlanner(1, 3, iters=3).plan(objective, obs, record=False).values == []
        plan = IterativePlanner(1, 3, iters=4).plan(objective, obs, record=False)
    assert plan.values == [] and not plan.mu.requires_grad


def test_adam_planner_starts_from_init():
    target = _targets(4, 2)
    mu0 = torch.atanh(target)
    plan = AdamPlanner(1, 2, iters=1, lr=1e-6).plan(quadratic_objective(target), torch.zeros(4, 1),
                                                 init=(mu0, torch.full_like(mu0, -3.0)))
    torch.testing.assert_close(plan.mu, mu0, atol=1e-4, rtol=0)


def _train_iterative(planner, family, steps=300):
    opt = torch.optim.Adam(planner.parameters(), lr=1e-3)
    for _ in range(steps):
        obs, objective = family.sample(32, samples=4)
        plan = planner.plan(objective, obs)
        opt.zero_grad()
        (-plan.surrogate).backward()
        opt.step()


def test_iterative_planner_learns_to_optimize_and_stays_stable_beyond_its_iterations():
    """Trained with K = 5 on objectives whose optimum only the gradient reveals, it improves
    J within those 5 iterations and does not diverge when run for 30."""
    torch.manual_seed(0)
    family = HiddenTargets(act_dim=6)
    planner = IterativePlanner(obs_dim=3, act_dim=6, iters=5, hidden=64)
    obs, objective = family.sample(512, samples=50)
    with torch.no_grad():
        untrained = planner.plan(objective, obs, iters=5).trace().mean(1)
    _train_iterative(planner, family)
    with torch.no_grad():
        trace = planner.plan(objective, obs, iters=30).trace().mean(1)
    # without the gradient, the best a planner can do is one guess for all states (mu = 0)
    blind = max(objective(torch.zeros(512, 6), torch.full((512, 6), s)).mean().item()
                for s in (-4.0, -3.0, -2.0, -1.0, 0.0))
    assert trace[4] > max(untrained[4].item(), blind) + 3.0, (untrained, blind, trace)
    assert trace[4] > trace[0], trace
    assert trace[5:].min() > trace[4] - 0.25, trace


def _reference_iterative_gradient(planner, objective, obs, iters):
    """Gradient of mean_k J(lambda_k) by plain backprop through the objective and autograd
    through the planner net's steps."""
    mu = torch.zeros(obs.shape[0], planner.act_dim, requires_grad=True)
    log_std = torch.zeros(obs.shape[0], planner.act_dim, requires_grad=True)
    value, values = objective(mu, log_std), []
    for _ in range(iters):
        grads = torch.autograd.grad(value.sum(), (mu, log_std), retain_graph=True)
        mu, log_std = planner.net(obs, mu, log_std, *grads)
        value = objective(mu, log_std)
        values.append(value)
    return torch.autograd.grad(torch.stack(values).mean(), list(planner.parameters()),
                               allow_unused=True)


@pytest.mark.parametrize("act_dim, layers", [(2, 2), (1, 3)])
def test_surrogate_gradient_equals_backprop_through_the_objective(act_dim, layers):
    """The hand-written backward through the recorded steps (with and without the per-block
    layer norm, one or two hidden trunk layers) equals autograd through the objective."""
    family = HiddenTargets(act_dim=act_dim)
    obs, objective = family.sample(8, samples=3)
    planner = IterativePlanner(3, act_dim, iters=3, hidden=16, layers=layers)
    for p in planner.parameters():  # leave the zero-init point so every path is exercised
        torch.nn.init.normal_(p, std=0.3)
    torch.manual_seed(5)
    plan = planner.plan(objective, obs)
    fast = torch.autograd.grad(plan.surrogate, list(planner.parameters()), allow_unused=True)
    torch.manual_seed(5)
    reference = _reference_iterative_gradient(planner, objective, obs, iters=3)
    for a, b in zip(fast, reference):
        if b is None:  # the layer norm's affine parameters when A = 1
            assert a is None
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not any(v.requires_grad for v in plan.values)
    with torch.no_grad():
        plan = planner.plan(objective, obs)
    assert plan.surrogate is None and not plan.mu.requires_grad


class _ClosedFormObjective:
    """Deterministic J = -|mu - t_s|^2 - |log_std + 1|^2 with its exact gradient; parameters
    with n rows score the first n states."""

    alpha = 0.1

    def __init__(self, targets):
        self.targets, self.act_dim = targets, targets.shape[1]

    def __call__(self, mu, log_std):
        t = self.targets[: mu.shape[0]]
        return -(mu - t).pow(2).sum(-1) - (log_std + 1).pow(2).sum(-1)

    def value_and_grad(self, mu, log_std, with_value=True):
        t = self.targets[: mu.shape[0]]
        return self(mu, log_std) if with_value else None, (-2 * (mu - t), -2 * (log_std + 1))


@pytest.mark.parametrize("name", ["direct", "iterative"])
def test_train_rows_train_and_score_only_the_first_states(name):
    """Planning 8 states with train_rows=5 trains and scores exactly as planning the first
    5 alone (rows never mix), while the other 3 are still planned."""
    torch.manual_seed(0)
    planner = (DirectPlanner(3, 2, hidden=16) if name == "direct"
               else IterativePlanner(3, 2, iters=3, hidden=16))
    for p in planner.parameters():
        torch.nn.init.normal_(p, std=0.3)
    obs, targets = torch.randn(8, 3), torch.rand(8, 2) - 0.5
    plan = planner.plan(_ClosedFormObjective(targets), obs, train_rows=5)
    alone = planner.plan(_ClosedFormObjective(targets[:5]), obs[:5])
    params = list(planner.parameters())
    for a, b in zip(torch.autograd.grad(plan.surrogate, params, allow_unused=True),
                    torch.autograd.grad(alone.surrogate, params, allow_unused=True)):
        torch.testing.assert_close(a, b)
    assert plan.mu.shape == (8, 2) and len(plan.values) == len(alone.values)
    for value, reference in zip(plan.values, alone.values):
        torch.testing.assert_close(value, reference)
    torch.testing.assert_close(plan.mu[:5], alone.mu)


def test_direct_planner_value_is_the_objective_at_its_output():
    family = HiddenTargets(act_dim=2)
    obs, objective = family.sample(4)
    planner = DirectPlanner(3, 2, hidden=16)
    torch.manual_seed(1)
    plan = planner.plan(objective, obs)
    torch.manual_seed(1)
    mu, log_std = planner.net(obs)
    value = objective(mu, log_std)
    torch.testing.assert_close(plan.values[0], value.detach())
    params = list(planner.parameters())
    for a, b in zip(torch.autograd.grad(plan.surrogate, params),
                    torch.autograd.grad(value.mean(), params)):
        torch.testing.assert_close(a, b)
    assert math.isfinite(plan.seconds[0])


def test_eager_and_transform_gradients_agree_with_autograd_of_j():
    """Both routes to dJ/dlambda (autograd.grad eager, torch.func.grad for compilation)
    equal autograd of J itself, row by row, with the same random draws."""
    from mbiapo.models.q_ensemble import QEnsemble
    from mbiapo.objective import soft_value, soft_value_and_grad, soft_value_and_grad_transform
    from mbiapo.value import ModelFreeValue

    value = ModelFreeValue(QEnsemble(obs_dim=3, act_dim=2, members=2, hidden=16))
    obs = torch.randn(6, 3)
    mu, log_std = torch.randn(6, 2), torch.randn(6, 2) * 0.5
    q = lambda a: value(obs, a, 1.5)  # noqa: E731
    torch.manual_seed(7)
    m, s = mu.clone().requires_grad_(True), log_std.clone().requires_grad_(True)
    j = soft_value(q, m, s, 0.3, 4)
    expected = [torch.autograd.grad(j[i], (m, s), retain_graph=True) for i in range(6)]
    for route in (soft_value_and_grad, soft_value_and_grad_transform):
        torch.manual_seed(7)
        with torch.no_grad():
            got, grads = route(q, mu, log_std, 0.3, 4)
        torch.testing.assert_close(got, j.detach())
        assert not got.requires_grad and not any(g.requires_grad for g in grads)
        for i, (row_mu, row_log_std) in enumerate(expected):
            torch.testing.assert_close(grads[0][i], row_mu[i])
            torch.testing.assert_close(grads[1][i], row_log_std[i])


def test_training_without_record_keeps_only_the_final_value():
    torch.manual_seed(0)
    planner = IterativePlanner(obs_dim=3, act_dim=2, iters=3, hidden=16)
    objective = _ClosedFormObjective(torch.randn(5, 2))
    obs = torch.randn(5, 3)
    recorded = planner.plan(objective, obs, record=True)
    lean = planner.plan(objective, obs, record=False)
    assert len(recorded.values) == 3 and len(lean.values) == 1
    torch.testing.assert_close(lean.values[0], recorded.values[-1])
    with torch.no_grad():
        assert planner.plan(objective, obs, record=False).values == []
