"""MPPI over action sequences (TD-MPC2's planner): refit to the elites, each weighted by
exp(score / temperature)."""

from dataclasses import dataclass

import torch
from torch import Tensor

from mbiapo.bounds import setting
from mbiapo.planners.sequence import SamplingSequencePlanner, SequenceConfig, top


@dataclass
class MPPISequenceConfig(SequenceConfig):
    """TD-MPC2: 64 elites of 512, temperature 0.5."""

    elites: int = setting(64, ge=1)  # the best sequences, refitted
    # weights exp((score - best) / temperature): lower is greedier
    temperature: float = setting(0.5, gt=0)

    @staticmethod
    def check(cfg) -> str | None:
        problem = SequenceConfig.check(cfg)
        if problem:
            return problem
        if cfg.elites > cfg.population:
            return (f"planner.elites must lie in [1, planner.population], got {cfg.elites} "
                    f"and {cfg.population}")
        return None


class MPPISequencePlanner(SamplingSequencePlanner):
    """mu = sum_i w_i u_i, sigma^2 = sum_i w_i (u_i - mu)^2 over the elites, with
    w = softmax(score / temperature)."""

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 6, horizon: int = 5,
                 population: int = 512, prior_samples: int = 24, init_std: float = 2.0,
                 min_std: float = 0.05, terminal_value: bool = True, elites: int = 64,
                 temperature: float = 0.5):
        super().__init__(act_dim, iters, horizon, population, prior_samples, init_std,
                         min_std, terminal_value)
        self.elites, self.temperature = elites, temperature

    def refit(self, u: Tensor, score: Tensor, mu: Tensor, log_std: Tensor
              ) -> tuple[Tensor, Tensor, None]:
        elite, best = top(u, score, self.elites)
        w = torch.softmax(best / self.temperature, dim=1)[:, :, None, None]  # (B, k, 1, 1)
        mu = (w * elite).sum(1)
        var = (w * (elite - mu.unsqueeze(1)).square()).sum(1)
        return mu, 0.5 * var.clamp_min(1e-24).log(), None
