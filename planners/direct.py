"""Direct amortization (SAC's actor): lambda = f_phi(s) in one forward pass."""

import torch
from torch import Tensor, nn

from mbiapo.models.policy_nets import DirectPolicyNet
from mbiapo.planners.base import Callback, Clock, Objective, Plan, surrogate


class DirectPlanner(nn.Module):
    trainable = True
    iters = 1

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 1, hidden: int = 256,
                 layers: int = 2, activation: str = "relu", layer_norm: bool = False):
        """``iters`` is ignored (one forward pass), taken for the uniform signature."""
        super().__init__()
        self.net = DirectPolicyNet(obs_dim, act_dim, hidden, layers, activation, layer_norm)

    def plan(self, objective: Objective, obs: Tensor, iters: int | None = None,
             init: tuple[Tensor, Tensor] | None = None, record: bool = True,
             callback: Callback | None = None, train_rows: int | None = None) -> Plan:
        """``iters`` and ``init`` are ignored: a direct planner has a single step."""
        training = torch.is_grad_enabled()
        clock = Clock(obs.device)
        n = obs.shape[0] if train_rows is None else train_rows
        mu, log_std = self.net(obs)
        if callback is not None:
            callback(0, mu.detach(), log_std.detach())
        plan = Plan(mu.detach(), log_std.detach())
        if record or training:
            value, grads = objective.value_and_grad(mu[:n], log_std[:n])
            plan.values.append(value)
            plan.seconds.append(clock())
            if training:
                plan.surrogate = surrogate([grads], [(mu[:n], log_std[:n])])
        return plan
