"""Sampling planners: each iteration scores N actions drawn from the current tanh-Gaussian
and refits it in pre-tanh space (fitting post-tanh samples into a pre-tanh Gaussian would
confine the mean action to |a| < 0.76). CEM and MPPI differ only in the refit."""

import torch
from torch import Tensor

from mbiapo.models.tanh_gaussian import LOG_STD_MAX, LOG_STD_MIN, TanhGaussian
from mbiapo.planners.base import Callback, Clock, Objective, Plan, initial_params


class SamplingPlanner:
    """Each iteration: N samples u ~ N(mu, sigma^2) (B, N, A), scores
    ``Q(s, tanh u) - alpha log pi`` (B, N), ``refit(u, score) -> (mu, log_std)`` (B, A), then
    smoothing (new = s old + (1 - s) refit) and a sigma floor. Starts at mu = 0, sigma = 1
    (or ``init``); all states in one batch."""

    trainable = False

    def __init__(self, act_dim: int, iters: int, population: int, smoothing: float,
                 min_log_std: float = LOG_STD_MIN):
        self.act_dim, self.iters, self.population = act_dim, iters, population
        self.smoothing, self.min_log_std = smoothing, min_log_std

    def refit(self, u: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

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
            new_mu, new_log_std = self.refit(u, score)
            mu = s * mu + (1 - s) * new_mu
            log_std = (s * log_std + (1 - s) * new_log_std).clamp(self.min_log_std, LOG_STD_MAX)
            if callback is not None:
                callback(k, mu, log_std)
            if record:
                plan.values.append(objective(mu, log_std))
                plan.seconds.append(clock())
        plan.mu, plan.log_std = mu, log_std
        return plan
