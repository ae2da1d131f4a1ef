"""J over two dimensions of the policy mean (paper A.1, Figs. 1, 2, 19): the other dimensions
and the scales stay at a planner's estimate; the grid is laid out in action space a = tanh(mu),
where the box (-1, 1)^2 shows the whole range."""

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm import tqdm

from mbiapo.analyses import plots
from mbiapo.analyses.common import ObjectiveFn, Setup, evaluate, follow, write_csv
from mbiapo.planners import Planner

EDGE = 0.995  # |a| on the grid's border: atanh stays finite


def action_axis(points: int, device: torch.device | str = "cpu") -> Tensor:
    """(points,) action values from -EDGE to EDGE."""
    return torch.linspace(-EDGE, EDGE, points, device=device)


def grid_objective(objective_fn: ObjectiveFn, obs: Tensor, mu: Tensor, log_std: Tensor,
                   dims: tuple[int, int], axis: Tensor, seed: int = 0,
                   chunk: int = 256) -> Tensor:
    """J (G, G) at one state obs (S,) with mu (A,) except mu[dims] = atanh(axis) on a G x G
    grid; entry [x, y] has a[dims[0]] = axis[x] and a[dims[1]] = axis[y]."""
    g = axis.shape[0]
    mus = mu.repeat(g * g, 1)
    grid_x, grid_y = torch.meshgrid(axis, axis, indexing="ij")
    mus[:, dims[0]] = torch.atanh(grid_x.reshape(-1))
    mus[:, dims[1]] = torch.atanh(grid_y.reshape(-1))
    values = []
    for start in range(0, g * g, chunk):
        part = mus[start:start + chunk]
        objective = objective_fn(obs.expand(part.shape[0], -1))
        values.append(evaluate(objective, [(part, log_std.expand_as(part))], seed)[0])
    return torch.cat(values).reshape(g, g)


def pair_rows(objective_fn: ObjectiveFn, obs: Tensor, mu: Tensor, log_std: Tensor,
              pairs: list[tuple[int, int]], grid: int, seed: int,
              density: Callable[[tuple[int, int], Tensor], Tensor] | None = None) -> list[dict]:
    """CSV rows of J on a ``grid`` x ``grid`` action grid for every pair of action dims at one
    state obs (S,), around mu, log_std (A,); with ``density(dims, axis) -> (G, G)``, that
    density in each row too."""
    axis = action_axis(grid, obs.device)
    rows = []
    for dims in tqdm(pairs, desc="surfaces", unit="pair", leave=False, disable=len(pairs) < 2):
        j = grid_objective(objective_fn, obs, mu, log_std, dims, axis, seed)
        dens = density(dims, axis) if density else None
        for x in range(grid):
            for y in range(grid):
                row = {"pair": f"{dims[0]}-{dims[1]}", "a_x": f"{axis[x].item():.6g}",
                       "a_y": f"{axis[y].item():.6g}", "objective": f"{j[x, y].item():.6g}"}
                if dens is not None:
                    row["density"] = f"{dens[x, y].item():.6g}"
                rows.append(row)
    return rows


def run(setup: Setup, planners: dict[str, Planner], dims: tuple[int, int], grid: int,
        iters: int, samples: int | None, eval_samples: int, state: dict) -> dict:
    """``mbiapo surface`` at the one state setup.obs (1, S): J on the grid of ``dims`` around
    the checkpoint planner's estimate, and each planner's path from mu = 0 (untrained ones
    run ``iters`` iterations). ``state`` says where the state came from (summary.json).
    Writes surface.csv, surface_paths.csv, summary.json, surface.png."""
    obs, agent = setup.obs, setup.agent
    plan_objective = setup.objective(samples)(obs)
    score = setup.objective(eval_samples)
    seed = setup.seed + 1  # the planners' samples differ from the estimator's
    estimate = follow(agent.planner, plan_objective, obs, agent.planner.iters, seed=seed)[0][-1]
    grid_rows = pair_rows(score, obs[0], estimate[0][0], estimate[1][0], [dims], grid,
                          setup.seed)
    path_rows, finals = [], {}
    for name, planner in planners.items():
        params = follow(planner, plan_objective, obs,
                        planner.iters if planner.trainable else iters, seed=seed)[0]
        start = (torch.zeros_like(estimate[0]), torch.zeros_like(estimate[1]))
        values = evaluate(score(obs), [start, *params], setup.seed)[:, 0].tolist()
        for k, ((mu, _), value) in enumerate(zip([start, *params], values)):
            a = torch.tanh(mu[0])
            path_rows.append({"pair": f"{dims[0]}-{dims[1]}", "planner": name, "iteration": k,
                              "a_x": f"{a[dims[0]].item():.6g}", "a_y": f"{a[dims[1]].item():.6g}",
                              "objective": f"{value:.6g}"})
        finals[name] = values[-1]
    best = max(grid_rows, key=lambda r: float(r["objective"]))
    summary = {**setup.header("surface", 1), **state, "dims": list(dims), "grid": grid,
               "estimate_planner": agent.cfg.planner.name,
               "grid_best": {k: float(best[k]) for k in ("a_x", "a_y", "objective")},
               "final_objective": finals}
    write_csv(setup.out / "surface.csv", grid_rows)
    write_csv(setup.out / "surface_paths.csv", path_rows)
    lines = [f"best J on the grid of a[{dims[0]}], a[{dims[1]}]: {best['objective']} at "
             f"({best['a_x']}, {best['a_y']}); final J of each planner (all dims free):"]
    lines += [f"  {name:<10} {value:.4g}" for name, value in finals.items()]
    return setup.finish(summary, plots.plot_surface, "\n".join(lines))
