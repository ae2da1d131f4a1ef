"""Cross-entropy method, fitted in pre-tanh space (fitting post-tanh elites into a pre-tanh
Gaussian would confine the mean action to |a| < 0.76)."""

from dataclasses import dataclass

import torch
from torch import Tensor

from mbiapo.models.tanh_gaussian import LOG_STD_MAX, LOG_STD_MIN, TanhGaussian
from mbiapo.planners.base import Callback, Clock, Objective, Plan, PlannerConfig, initial_params


@dataclass
class CEMConfig(PlannerConfig):
    """Paper B.4: 100 samples, 10 elites, 100 iterations."""

    iters: int = 100
    population: int = 100  # action samples scored per iteration
    elites: int = 10  # the best ones, refitted
    smoothing: float = 0.0  # new = s * old + (1 - s) * refit (the paper's step 0.01: 0.99)

    @staticmethod
    def check(cfg) -> str | None:
        if not 0 < cfg.elites <= cfg.population:
            return (f"planner.elites must lie in [1, planner.population], got {cfg.elites} "
                    f"and {cfg.population}")
        return None if 0 <= cfg.smoothing < 1 else "planner.smoothing must lie in [0, 1)"


class CEMPlanner:
    """Each iteration: N samples u ~ N(mu, sigma^2), score ``Q(s, tanh u) - alpha log pi``,
    refit mu, sigma to the top-k in pre-tanh space, with optional smoothing and a sigma floor."""

    trainable = False

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 100, population: int = 100,
                 elites: int = 10, smoothing: float = 0.0, min_log_std: float = LOG_STD_MIN):
        if not 0 < elites <= population:
            raise ValueError(f"cem needs 0 < elites <= population, got {elites} and "
                             f"{population}")
        self.act_dim = act_dim
        self.iters = iters
        self.population = population
        self.elites = elites
        self.smoothing = smoothing
        self.min_log_std = min_log_std

    @torch.no_grad()
    def plan(self, objective: Objective, obs: Tensor, iters: int | None = None,
             init: tuple[Tensor, Tensor] | None = None, record: bool = True,
             callback: Callback | None = None, train_rows: int | None = None) -> Plan:
        """Not trained: ``train_rows`` is ignored."""
        iters = self.iters if iters is None else iters
        clock = Clock(obs.device)
        mu, log_std = initial_params(obs, self.act_dim, init)
        plan = Plan(mu, log_std)
        for k in range(iters):
            dist = TanhGaussian(mu, log_std)
            actions, u, _ = dist.rsample(self.population)  # (B, N, A)
            score = objective.q(actions) - objective.alpha * dist.log_prob_pre_tanh(u)
            top = score.topk(self.elites, dim=1).indices  # (B, k)
            elite = u.gather(1, top.unsqueeze(-1).expand(-1, -1, self.act_dim))
            new_mu = elite.mean(1)
            new_log_std = elite.std(1, correction=0).clamp_min(1e-12).log()
            s = self.smoothing
            mu = s * mu + (1 - s) * new_mu
            log_std = (s * log_std + (1 - s) * new_log_std).clamp(self.min_log_std, LOG_STD_MAX)
            if callback is not None:
                callback(k, mu, log_std)
            if record:
                plan.values.append(objective(mu, log_std))
                plan.seconds.append(clock())
        plan.mu, plan.log_std = mu, log_std
        return plan
