import math

import numpy as np
import pytest
import torch

from mbiapo.analyses.bias import monte_carlo, uniform_pairs
from mbiapo.analyses.common import evaluate, follow
from mbiapo.analyses.compare import Trace, compare, iterations_to_reach, summarize, table
from mbiapo.analyses.gap import amortization_gap
from mbiapo.analyses.modes import mixture_density, pairwise_distances, planning_runs
from mbiapo.analyses.surface import action_axis, grid_objective
from mbiapo.envs import make_env
from mbiapo.objective import SoftObjective
from mbiapo.planners import AdamPlanner, CEMPlanner
from tests.synthetic import quadratic_objective


def _trace(curve, seconds_per_iter, states=3):
    """A crafted trace: every state has value curve[k] + state index."""
    values = torch.tensor(curve).unsqueeze(1) + torch.arange(states).float()
    return Trace(values, [seconds_per_iter * (k + 1) for k in range(len(curve))], [])


def test_iterations_to_reach_is_the_first_iteration_at_or_above_the_target():
    assert iterations_to_reach([0.0, 1.0, 2.0, 2.0], 2.0) == 3
    assert iterations_to_reach([5.0], 2.0) == 1
    assert iterations_to_reach([0.0, 1.9], 2.0) is None


def test_compare_summary_counts_iterations_to_the_iterative_planner_after_five():
    k = 60
    iterative = [1.0, 2.0, 3.0, 4.0, 5.0] + [5.5] * (k - 5)
    adam = [0.1 * (i + 1) for i in range(k)]  # mean over states adds 1: reaches 6 at i = 49
    cem = [4.0] * k
    summary = summarize({"iterative": _trace(iterative, 0.0125), "adam": _trace(adam, 0.01),
                         "cem": _trace(cem, 0.02), "direct": _trace([7.0], 0.001)},
                        trained="iterative")
    assert summary["reference"] == {"planner": "iterative", "iteration": 5, "J_mean": 6.0}
    planners = summary["planners"]
    assert planners["adam"]["iterations_to_reference"] == 50
    assert planners["cem"]["iterations_to_reference"] is None
    assert planners["direct"]["iterations_to_reference"] == 1
    assert planners["iterative"]["iterations_to_reference"] is None
    assert planners["adam"]["J_at_5"]["mean"] == pytest.approx(1.5)
    assert planners["adam"]["J_at_5"]["std"] == pytest.approx(math.sqrt(2 / 3))
    assert planners["iterative"]["J_final"]["mean"] == pytest.approx(6.5)
    assert planners["direct"]["J_at_5"]["mean"] == pytest.approx(8.0)  # its single step
    assert summary["time_per_iteration_iterative_vs_adam"] == pytest.approx(1.25)
    assert summary["time_per_iteration_iterative_vs_cem"] == pytest.approx(0.625)
    printed = table(summary)
    assert "not reached" in printed and " 50" in printed and "(reference)" in printed


def test_compare_reference_is_the_iteratives_last_value_when_it_ran_fewer_than_five():
    summary = summarize({"iterative": _trace([1.0, 3.0], 0.1), "adam": _trace([2.0, 4.0], 0.1)},
                        trained="iterative")
    assert summary["reference"]["iteration"] == 2
    assert summary["planners"]["adam"]["iterations_to_reference"] == 2


def test_compare_runs_adam_and_cem_to_the_known_optimum_from_the_same_start():
    targets = torch.rand(8, 2) * 1.2 - 0.6
    # the "states" are the targets, so a batch of states is a batch of objectives
    objective_fn = lambda obs: quadratic_objective(obs, samples=10)  # noqa: E731
    exact_fn = lambda obs: quadratic_objective(obs, samples=2000)  # noqa: E731
    planners = {"adam": AdamPlanner(1, 2, lr=0.05), "cem": CEMPlanner(1, 2)}
    traces = compare(planners, objective_fn, exact_fn, targets, iters=300)
    start = evaluate(exact_fn(targets), [(torch.zeros(8, 2), torch.zeros(8, 2))]).mean()
    mu_star = torch.atanh(targets)  # the best J: at mu*, over a grid of sigmas
    best = max(evaluate(exact_fn(targets), [(mu_star, torch.full_like(mu_star, s))]).mean()
               for s in torch.arange(-6.0, -1.0, 0.25).tolist())
    for name, trace in traces.items():
        assert trace.values.shape == (300, 8) and len(trace.params) == 300
        mu = trace.params[-1][0]
        assert (torch.tanh(mu) - targets).abs().max() < 0.05, name
        assert trace.values[-1].mean() > start + 1.0
        assert trace.values[-1].mean() > best - 0.05
        assert all(b > a for a, b in zip(trace.seconds, trace.seconds[1:]))


def test_evaluate_uses_the_same_random_numbers_for_every_parameter_set():
    objective = quadratic_objective(torch.zeros(4, 2), samples=3)
    params = (torch.randn(4, 2), torch.zeros(4, 2))
    values = evaluate(objective, [params, params])
    assert torch.equal(values[0], values[1])
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    evaluate(objective, [params])
    assert torch.equal(torch.rand(1), before)  # the caller's random stream is untouched


def test_follow_records_every_iteration_without_aliasing_adams_in_place_updates():
    objective = quadratic_objective(torch.full((3, 2), 0.5))
    params, seconds, _ = follow(AdamPlanner(1, 2, lr=0.1), objective, torch.zeros(3, 1), 4)
    assert len(params) == len(seconds) == 4
    mus = torch.stack([mu for mu, _ in params])
    assert (mus[1:] - mus[:-1]).abs().min() > 0  # each step is its own snapshot


def test_gap_is_zero_at_the_optimum_and_positive_away_from_it():
    targets = torch.rand(16, 3) * 1.2 - 0.6
    obs = torch.zeros(16, 1)
    objective, score = quadratic_objective(targets, samples=100), \
        quadratic_objective(targets, samples=1000)
    converged = AdamPlanner(1, 3, iters=1500, lr=0.02).plan(objective, obs, record=False)
    optimum = (converged.mu.detach(), converged.log_std.detach())
    before, after = amortization_gap(objective, score, obs, optimum)
    assert (after - before).mean().abs() < 0.01
    start = (torch.zeros(16, 3), torch.zeros(16, 3))
    before, after = amortization_gap(objective, score, obs, start)
    assert (after - before).mean() > 1.0
    assert ((after - before) > 0).all()


def _two_modes(obs, samples=10, scale=10.0):
    """Q(a) = -scale min(|a - m1|^2, |a - m2|^2) with modes m1 = -m2 = (0.6, 0.6), the same
    for every state."""
    m = torch.tensor([[0.6, 0.6], [-0.6, -0.6]])

    def q(actions):
        return -scale * (actions.unsqueeze(-2) - m).pow(2).sum(-1).min(-1).values

    return SoftObjective(q, 0.01, 2, samples)


def test_modes_finds_both_modes_of_a_two_mode_objective():
    obs = torch.zeros(4, 1)
    mu, _ = planning_runs(AdamPlanner(1, 2, iters=300, lr=0.05), _two_modes, obs, runs=10,
                          iters=None, act_dim=2, init_std=1.5, seed=0)
    actions = torch.tanh(mu)  # (4, 10, 2)
    near = [(actions - torch.tensor(m)).norm(dim=-1) < 0.1 for m in ([0.6, 0.6], [-0.6, -0.6])]
    assert (near[0] | near[1]).all()  # every run ends at a mode
    assert near[0].any(1).all() and near[1].any(1).all()  # every state finds both
    distances = pairwise_distances(actions)
    assert distances.shape == (4, 45)
    assert distances.max(1).values.sub(0.6 * 2 * math.sqrt(2)).abs().max() < 0.1


def test_pairwise_distances_by_hand():
    actions = torch.tensor([[[0.0, 0.0], [0.3, 0.4], [0.0, 1.0]]])
    expected = torch.tensor([[0.5, 1.0, math.sqrt(0.09 + 0.36)]])
    assert torch.allclose(pairwise_distances(actions), expected)


def test_mixture_density_integrates_to_one_and_peaks_at_each_run():
    mu = torch.atanh(torch.tensor([[0.5, -0.5, 0.0], [-0.5, 0.5, 0.0]]))
    log_std = torch.full((2, 3), -1.5)
    axis = action_axis(401)
    density = mixture_density(mu, log_std, (0, 1), axis)
    cell = (axis[1] - axis[0]) ** 2
    assert (density.sum() * cell).item() == pytest.approx(1.0, abs=0.02)
    peak_x, peak_y = np.unravel_index(density.argmax().item(), density.shape)
    assert {round(axis[peak_x].item(), 1), round(axis[peak_y].item(), 1)} == {0.5, -0.5}


def test_grid_objective_puts_each_dim_on_its_own_axis():
    # J = a0 + 2 a2 - 3 a1 with a tiny sigma and alpha = 0: the grid equals the formula
    weights = torch.tensor([1.0, -3.0, 2.0])
    objective_fn = lambda obs: SoftObjective(  # noqa: E731
        lambda a: (a * weights).sum(-1), 0.0, 3, 2)
    mu, log_std = torch.tensor([0.0, 0.3, 0.0]), torch.full((3,), -9.0)
    axis = action_axis(5)
    values = grid_objective(objective_fn, torch.zeros(1), mu, log_std, (2, 0), axis, chunk=7)
    expected = 2 * axis[:, None] + axis[None, :] - 3 * math.tanh(0.3)
    assert torch.allclose(values, expected, atol=1e-3)


def test_monte_carlo_restores_the_pair_and_scores_its_first_reward():
    pairs = uniform_pairs("Hopper-v5", 3, seed=1, every=4)
    assert pairs.obs.shape == (3, 11) and pairs.actions.shape == (3, 3)
    env = make_env("Hopper-v5")
    rewards = []
    for k in range(3):
        env.reset(seed=0)
        env.unwrapped.set_state(pairs.qpos[k], pairs.qvel[k])
        assert np.allclose(env.unwrapped._get_obs(), pairs.obs[k])
        rewards.append(env.step(pairs.actions[k])[1])
    env.close()

    class NoAgent:  # horizon 1 never consults the planner
        cfg = type("cfg", (), {"train": type("t", (), {"gamma": 0.9}),
                               "env": type("e", (), {"id": "Hopper-v5"})})
        obs_dim, alpha = 11, 0.5

    returns = monte_carlo(NoAgent(), pairs, rollouts=2, horizon=1, seed=0)
    assert returns.shape == (3, 2)
    assert np.allclose(returns, np.array(rewards)[:, None])


def test_compare_plans_against_a_model_based_value_or_its_q_nets(tiny_cfg, tmp_path, capsys):
    import json

    from mbiapo.agent import Agent
    from mbiapo.analyses.common import analysis_agent
    from mbiapo.analyses.states import save_states
    from mbiapo.checkpoint import save_checkpoint
    from mbiapo.cli import main
    from mbiapo.value import ModelBasedValue, ModelFreeValue

    agent = Agent(tiny_cfg("iterative", **{"value.kind": "model-based"}), 4, 1)
    save_checkpoint(tmp_path / "mb.pt", agent, {"step": 0})
    save_states(tmp_path / "s.h5", np.random.default_rng(0).normal(size=(3, 4)).astype(
        np.float32), agent, {})
    assert isinstance(analysis_agent(str(tmp_path / "mb.pt"), None, "cpu").value,
                      ModelBasedValue)
    assert isinstance(analysis_agent(str(tmp_path / "mb.pt"), "model-free", "cpu").value,
                      ModelFreeValue)
    finals = {}
    for value in ("model-based", "model-free"):
        argv = ["compare", "--checkpoint", str(tmp_path / "mb.pt"), "--states",
                str(tmp_path / "s.h5"), "--iters", "2", "--eval-samples", "4", "--value", value,
                "--out", str(tmp_path / value), "--json"]
        assert main(argv) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["value"] == value
        finals[value] = summary["planners"]["adam"]["J_final"]["mean"]
    assert finals["model-based"] != finals["model-free"]  # a different objective was planned
