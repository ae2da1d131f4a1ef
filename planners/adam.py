"""Gradient ascent on lambda with ``torch.optim.Adam`` (a non-amortized baseline)."""

from dataclasses import dataclass

import torch
from torch import Tensor

from mbiapo.bounds import setting
from mbiapo.models.tanh_gaussian import LOG_STD_MAX, LOG_STD_MIN
from mbiapo.planners.base import Callback, Clock, Objective, Plan, PlannerConfig, initial_params


@dataclass
class AdamConfig(PlannerConfig):
    """Paper B.4: lr 0.01, 100 steps (10 samples per gradient: ``samples``)."""

    iters: int = 100
    lr: float = setting(0.01, gt=0)


class AdamPlanner:
    """Adam on (mu, log_std) per state; Adam is element-wise, so a batch is B independent runs."""

    trainable = False

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 100, lr: float = 0.01):
        self.act_dim = act_dim
        self.iters = iters
        self.lr = lr

    def plan(self, objective: Objective, obs: Tensor, iters: int | None = None,
             init: tuple[Tensor, Tensor] | None = None, record: bool = True,
             callback: Callback | None = None, train_rows: int | None = None) -> Plan:
        """Not trained: ``train_rows`` is ignored."""
        iters = self.iters if iters is None else iters
        clock = Clock(obs.device)
        mu, log_std = initial_params(obs, self.act_dim, init)
        optimizer = torch.optim.Adam((mu, log_std), lr=self.lr, maximize=True)
        plan = Plan(mu, log_std)
        _, grads = objective.value_and_grad(mu, log_std)
        for k in range(iters):
            mu.grad, log_std.grad = grads
            optimizer.step()
            with torch.no_grad():
                log_std.clamp_(LOG_STD_MIN, LOG_STD_MAX)
            if callback is not None:
                callback(k, mu.detach(), log_std.detach())
            if k + 1 < iters:
                value, grads = objective.value_and_grad(mu, log_std)
            elif record:
                with torch.no_grad():
                    value = objective(mu, log_std)
            if record:
                plan.values.append(value)
                plan.seconds.append(clock())
        return plan
