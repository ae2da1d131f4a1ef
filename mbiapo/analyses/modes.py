"""Multiple policy modes (paper 4.2.3, B.7, Fig. 7): repeated planning runs per state from
random initialisations, and the L2 distances between their actions tanh(mu) (at most
2 sqrt(|A|))."""

import itertools
import math

import torch
from torch import Tensor

from mbiapo.analyses import plots
from mbiapo.analyses.common import ObjectiveFn, Setup, evaluate, follow, mean_std, write_csv
from mbiapo.analyses.surface import pair_rows
from mbiapo.planners import Planner


def planning_runs(planner: Planner, objective_fn: ObjectiveFn, obs: Tensor, runs: int,
                  iters: int | None, act_dim: int, init_std: float = 1.0,
                  seed: int = 0) -> tuple[Tensor, Tensor]:
    """mu, log_std (N, R, A): ``runs`` searches per state obs (N, S), all in one batch, each
    from mu ~ N(0, init_std^2), sigma = 1."""
    n = obs.shape[0]
    repeated = obs.repeat_interleave(runs, 0)
    generator = torch.Generator(device=obs.device).manual_seed(seed)
    mu0 = init_std * torch.randn(n * runs, act_dim, generator=generator, device=obs.device)
    iters = planner.iters if iters is None else iters
    params, _, _ = follow(planner, objective_fn(repeated), repeated, iters,
                       init=(mu0, torch.zeros_like(mu0)), seed=seed)
    mu, log_std = params[-1]
    return mu.reshape(n, runs, act_dim), log_std.reshape(n, runs, act_dim)


def pairwise_distances(actions: Tensor) -> Tensor:
    """actions (N, R, A) -> L2 distances between every two runs of a state (N, R(R-1)/2)."""
    runs = actions.shape[1]
    i, j = torch.triu_indices(runs, runs, 1, device=actions.device)
    return (actions[:, i] - actions[:, j]).norm(dim=-1)


def mixture_density(mu: Tensor, log_std: Tensor, dims: tuple[int, int], axis: Tensor) -> Tensor:
    """Density (G, G) on the action grid of dims of the equal mixture of R tanh-Gaussians
    mu, log_std (R, A), marginalised to the two dims; entry [x, y] as in ``grid_objective``."""
    u = torch.atanh(axis)  # (G,)

    def marginal(d: int) -> Tensor:  # (R, G): N(atanh a; mu, sigma) / (1 - a^2)
        z = (u - mu[:, d:d + 1]) / log_std[:, d:d + 1].exp()
        log_p = -0.5 * z.pow(2) - log_std[:, d:d + 1] - 0.5 * math.log(2 * math.pi)
        return log_p.exp() / (1 - axis.pow(2))

    px, py = marginal(dims[0]), marginal(dims[1])
    return torch.einsum("rx,ry->xy", px, py) / mu.shape[0]


def run(setup: Setup, name: str, planner: Planner, runs: int, iters: int | None,
        init_std: float, grid: int, samples: int | None, eval_samples: int) -> dict:
    """``mbiapo modes``: ``runs`` runs of the planner ``name`` per saved state from
    mu ~ N(0, init_std^2), distances between their actions and J of each run; for the state
    whose runs lie furthest apart, J around its first run and the runs' density on every
    pair of action dims. Writes modes.csv, modes_runs.csv, modes_pairs.csv, summary.json
    and plots."""
    agent, obs, seed = setup.agent, setup.obs, setup.seed
    mu, log_std = planning_runs(planner, setup.objective(samples), obs, runs, iters,
                                agent.act_dim, init_std, seed)
    actions = torch.tanh(mu)
    distances = pairwise_distances(actions)  # (N, P)
    repeated = obs.repeat_interleave(runs, 0)  # J of every run: distinct modes score alike
    values = evaluate(setup.objective(eval_samples)(repeated),
                      [(mu.flatten(0, 1), log_std.flatten(0, 1))], seed)[0]
    values = values.reshape(len(obs), runs)
    i, j = torch.triu_indices(runs, runs, 1)
    write_csv(setup.out / "modes.csv", [
        {"state": b, "run_i": i[p].item(), "run_j": j[p].item(), "distance": f"{d:.6g}",
         "J_i": f"{values[b, i[p]].item():.6g}", "J_j": f"{values[b, j[p]].item():.6g}"}
        for b, row in enumerate(distances.tolist()) for p, d in enumerate(row)])
    widest = distances.max(1).values.argmax().item()
    top = distances[widest].argmax().item()
    pairs = list(itertools.combinations(range(agent.act_dim), 2))
    if pairs:  # the widest state's runs, J around its first run, the runs' mixture density
        write_csv(setup.out / "modes_runs.csv", [
            {"pair": f"{x}-{y}", "run": r, "a_x": f"{a[x]:.6g}", "a_y": f"{a[y]:.6g}"}
            for x, y in pairs for r, a in enumerate(actions[widest].tolist())])
        first = i[top].item()
        write_csv(setup.out / "modes_pairs.csv", pair_rows(
            setup.objective(eval_samples), obs[widest], mu[widest, first],
            log_std[widest, first], pairs, grid, seed,
            lambda dims, axis: mixture_density(mu[widest], log_std[widest], dims, axis)))
    max_possible = 2 * math.sqrt(agent.act_dim)
    summary = {**setup.header("modes", len(obs)), "planner": name,
               "runs": runs, "iters": iters or planner.iters, "init_std": init_std,
               "max_possible_distance": max_possible, "distance": mean_std(distances.flatten()),
               "distance_max": distances.max().item(),
               "pairs_over_10pct_of_max": (distances > 0.1 * max_possible).float().mean().item(),
               "widest_state": widest, "widest_runs": [i[top].item(), j[top].item()],
               "J_spread_of_runs": mean_std(values.max(1).values - values.min(1).values)}
    spread, distance = summary["J_spread_of_runs"], summary["distance"]
    table = (f"{runs} runs x {len(obs)} states, distances between tanh(mu) "
             f"(max possible {max_possible:.3g}): mean {distance['mean']:.3g} ± "
             f"{distance['std']:.3g}, max {summary['distance_max']:.3g} (state {widest}); "
             f"{100 * summary['pairs_over_10pct_of_max']:.1f}% of pairs further apart than "
             f"10% of the max; best minus worst J of a state's runs {spread['mean']:.3g} ± "
             f"{spread['std']:.3g}")
    return setup.finish(summary, plots.plot_modes, table)
