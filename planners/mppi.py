"""Model predictive path integral (MPPI) on one action: the sampling planner whose refit
weighs every sample by exp(score / temperature), the smooth counterpart of CEM's top-k."""

from dataclasses import dataclass

import torch
from torch import Tensor

from mbiapo.bounds import setting
from mbiapo.models.tanh_gaussian import LOG_STD_MIN
from mbiapo.planners.base import PlannerConfig
from mbiapo.planners.sampling import SamplingPlanner


@dataclass
class MPPIConfig(PlannerConfig):
    iters: int = 100
    population: int = setting(100, ge=2)  # action samples scored per iteration
    temperature: float = setting(1.0, gt=0)  # weights exp(score / temperature): lower is greedier
    smoothing: float = setting(0.0, ge=0, lt=1)  # new = s * old + (1 - s) * refit


class MPPIPlanner(SamplingPlanner):
    """Refits to all samples weighted by w = softmax(score / temperature) over the N samples:
    mu = sum w u, sigma^2 = sum w (u - mu)^2."""

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 100, population: int = 100,
                 temperature: float = 1.0, smoothing: float = 0.0,
                 min_log_std: float = LOG_STD_MIN):
        super().__init__(act_dim, iters, population, smoothing, min_log_std)
        self.temperature = temperature

    def refit(self, u: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(score / self.temperature, dim=1).unsqueeze(-1)  # (B, N, 1)
        mu = (weights * u).sum(1)
        var = (weights * (u - mu.unsqueeze(1)).square()).sum(1)
        return mu, 0.5 * var.clamp_min(1e-24).log()
