"""J over two dimensions of the policy mean (paper A.1, Figs. 1, 2, 19): the other dimensions
and the scales stay at a planner's estimate; the grid is laid out in action space a = tanh(mu),
where the box (-1, 1)^2 shows the whole range."""

import torch
from torch import Tensor

from mbiapo.analyses.common import ObjectiveFn, evaluate

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
