"""Multiple policy modes (paper 4.2.3, B.7, Fig. 7): repeated planning runs per state from
random initialisations, and the L2 distances between their actions tanh(mu) (at most
2 sqrt(|A|))."""

import math

import torch
from torch import Tensor

from mbiapo.analyses.common import ObjectiveFn, follow
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
    torch.manual_seed(seed)
    iters = planner.iters if iters is None else iters
    params, _ = follow(planner, objective_fn(repeated), repeated, iters,
                       init=(mu0, torch.zeros_like(mu0)))
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
