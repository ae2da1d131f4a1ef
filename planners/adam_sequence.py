"""Gradient ascent on action sequences through a differentiable model, with
``torch.optim.Adam``: several candidate sequences side by side, the best one kept."""

from dataclasses import dataclass

import torch
from torch import Tensor

from mbiapo.bounds import setting
from mbiapo.errors import MbiapoError
from mbiapo.planners.sequence import SequenceConfig, SequencePlanner


@dataclass
class AdamSequenceConfig(SequenceConfig):
    """Candidates: the start plan, ``population`` - P - 1 around it with std ``init_std``,
    and P from the prior."""

    iters: int = 30
    population: int = 16  # candidate sequences ascended side by side, the prior's included
    prior_samples: int = 4
    init_std: float = 0.5  # spread of the candidates around the start plan (pre-tanh)
    lr: float = setting(0.1, gt=0)


class AdamSequencePlanner(SequencePlanner):
    """Adam on the pre-tanh actions of N candidates per state (B, N, H, A), maximizing their
    summed scores (each candidate's gradient is its own: the rows are independent); returns
    the candidate that scored best in the last iteration, with std ``min_std`` (a point
    plan)."""

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 30, horizon: int = 5,
                 population: int = 16, prior_samples: int = 4, init_std: float = 0.5,
                 min_std: float = 0.05, terminal_value: bool = True, lr: float = 0.1):
        super().__init__(act_dim, iters, horizon, prior_samples, init_std, min_std,
                         terminal_value)
        self.population, self.lr, self.init_std = population, lr, init_std

    def search(self, sequence, mu: Tensor, log_std: Tensor, prior: Tensor | None, iters: int,
               step) -> tuple[Tensor, Tensor]:
        if not sequence.differentiable:
            raise MbiapoError("adam-seq ascends gradients through the model, and this model "
                              "(the simulator) has none: use mppi-seq or cem-seq")
        b = mu.shape[0]
        spread = self.population - self.prior_samples - 1
        around = mu.unsqueeze(1) + self.init_std * torch.randn(
            b, spread, *mu.shape[1:], device=mu.device, dtype=mu.dtype)
        u = torch.cat([x for x in (prior, mu.unsqueeze(1), around) if x is not None], 1)
        u = u.detach().requires_grad_(True)
        optimizer = torch.optim.Adam([u], lr=self.lr, maximize=True)
        point = torch.full_like(mu, self.log_min_std)
        rows = torch.arange(b, device=mu.device)
        for k in range(iters):
            with torch.enable_grad():
                score = sequence.score(torch.tanh(u), self.terminal_value)
                optimizer.zero_grad()
                score.sum().backward()
            best = u.detach()[rows, score.detach().argmax(1)]
            step(k, best, point)
            if k + 1 < iters:
                optimizer.step()
        return best, point
