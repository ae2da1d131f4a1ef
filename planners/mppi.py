"""Model predictive path integral (MPPI) on one action: a softmax-weighted refit in pre-tanh
space, the smooth counterpart of CEM's top-k refit."""

from dataclasses import dataclass

import torch
from torch import Tensor

from mbiapo.models.tanh_gaussian import LOG_STD_MAX, LOG_STD_MIN, TanhGaussian
from mbiapo.planners.base import Callback, Clock, Objective, Plan, PlannerConfig, initial_params


@dataclass
class MPPIConfig(PlannerConfig):
    iters: int = 100
    population: int = 100  # action samples scored per iteration
    temperature: float = 1.0  # weights exp(score / temperature): lower is greedier
    smoothing: float = 0.0  # new = s * old + (1 - s) * refit

    @staticmethod
    def check(cfg) -> str | None:
        if cfg.population < 2:
            return f"planner.population must be >= 2, got {cfg.population}"
        if cfg.temperature <= 0:
            return f"planner.temperature must be > 0, got {cfg.temperature}"
        return None if 0 <= cfg.smoothing < 1 else "planner.smoothing must lie in [0, 1)"


class MPPIPlanner:
    """Each iteration: N samples u ~ N(mu, sigma^2) (B, N, A), scores
    ``Q(s, tanh u) - alpha log pi(tanh u)`` (B, N), weights w = softmax(score / temperature)
    over the samples, and the weighted refit mu = sum w u, sigma^2 = sum w (u - mu)^2 in
    pre-tanh space, with optional smoothing and a sigma floor. Start and batching as CEM."""

    trainable = False

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 100, population: int = 100,
                 temperature: float = 1.0, smoothing: float = 0.0,
                 min_log_std: float = LOG_STD_MIN):
        self.act_dim, self.iters = act_dim, iters
        self.population, self.temperature = population, temperature
        self.smoothing, self.min_log_std = smoothing, min_log_std

    @torch.no_grad()
    def plan(self, objective: Objective, obs: Tensor, iters: int | None = None,
             init: tuple[Tensor, Tensor] | None = None, record: bool = True,
             callback: Callback | None = None, train_rows: int | None = None) -> Plan:
        """Not trained: ``train_rows`` is ignored."""
        iters = self.iters if iters is None else iters
        clock = Clock(obs.device)
        mu, log_std = initial_params(obs, self.act_dim, init)
        plan = Plan(mu, log_std)
        s = self.smoothing
        for k in range(iters):
            dist = TanhGaussian(mu, log_std)
            actions, u, _ = dist.rsample(self.population)  # (B, N, A)
            score = objective.q(actions) - objective.alpha * dist.log_prob_pre_tanh(u)
            weights = torch.softmax(score / self.temperature, dim=1).unsqueeze(-1)  # (B, N, 1)
            new_mu = (weights * u).sum(1)
            new_var = (weights * (u - new_mu.unsqueeze(1)).square()).sum(1)
            new_log_std = 0.5 * new_var.clamp_min(1e-24).log()
            mu = s * mu + (1 - s) * new_mu
            log_std = (s * log_std + (1 - s) * new_log_std).clamp(self.min_log_std, LOG_STD_MAX)
            if callback is not None:
                callback(k, mu, log_std)
            if record:
                plan.values.append(objective(mu, log_std))
                plan.seconds.append(clock())
        plan.mu, plan.log_std = mu, log_std
        return plan
