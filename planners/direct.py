"""Direct amortization (SAC's actor): lambda = f_phi(s) in one forward pass."""

import torch
from torch import Tensor, nn

from mbiapo.models.policy_nets import DirectPolicyNet
from mbiapo.planners.base import (
    Callback,
    Clock,
    Objective,
    Plan,
    surrogate,
    value_and_grad,
)


class DirectPlanner(nn.Module):
    trainable = True
    iters = 1

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.net = DirectPolicyNet(obs_dim, act_dim, hidden, layers)

    def plan(self, objective: Objective, obs: Tensor, iters: int | None = None,
             init: tuple[Tensor, Tensor] | None = None, record: bool = True,
             callback: Callback | None = None, train_rows: int | None = None) -> Plan:
        """``iters`` and ``init`` are ignored: a direct planner has a single step."""
        training = torch.is_grad_enabled()
        clock = Clock(obs.device)
        n = obs.shape[0] if train_rows is None else train_rows
        with torch.no_grad():
            mu, log_std, vjp = self.net.forward_vjp(obs)
            if callback is not None:
                callback(0, mu, log_std)
            plan = Plan(mu, log_std)
            if record or training:
                value, grads = value_and_grad(objective, mu[:n], log_std[:n], grad=training)
                plan.values.append(value)
                plan.seconds.append(clock())
        if training:
            plan.surrogate = surrogate([grads], [(mu[:n], log_std[:n])],
                                       lambda pairs, factor: vjp(*pairs[0], factor),
                                       list(self.parameters()))
        return plan
