"""Iterative amortized policy optimization (Marino et al., 2021): a learned optimizer
``lambda <- omega * lambda + (1 - omega) * delta`` fed the objective's gradient."""

import torch
from torch import Tensor, nn

from mbiapo.models.policy_nets import IterativeAmortizerNet
from mbiapo.planners.base import Callback, Clock, Objective, Plan, initial_params, surrogate


class IterativePlanner(nn.Module):
    trainable = True

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 5, hidden: int = 256,
                 layers: int = 2, activation: str = "relu", layer_norm: bool = False):
        super().__init__()
        self.act_dim = act_dim
        self.iters = iters
        self.net = IterativeAmortizerNet(obs_dim, act_dim, hidden, layers, activation,
                                         layer_norm)

    def plan(self, objective: Objective, obs: Tensor, iters: int | None = None,
             init: tuple[Tensor, Tensor] | None = None, record: bool = True,
             callback: Callback | None = None, train_rows: int | None = None) -> Plan:
        """K iterations from mu = 0, sigma = 1 (or ``init``). Each J(lambda_k) is evaluated
        once; its gradient feeds step k+1 and, when training, the surrogate loss, which
        autograd backpropagates through the K steps of the net."""
        training = torch.is_grad_enabled()
        iters = self.iters if iters is None else iters
        n = obs.shape[0] if train_rows is None else train_rows
        clock = Clock(obs.device)
        mu, log_std = initial_params(obs, self.act_dim, init)
        plan = Plan(mu, log_std)
        _, grads = objective.value_and_grad(mu, log_std)
        encoded = self.net.encode(obs)
        grad_lambdas, lambdas = [], []
        for k in range(iters):
            mu, log_std = self.net.step(encoded, mu, log_std, *grads)
            if callback is not None:
                callback(k, mu.detach(), log_std.detach())
            last = k + 1 == iters
            if last and not (record or training):
                break
            rows = n if last else obs.shape[0]  # the next step needs every gradient
            value, grads = objective.value_and_grad(mu[:rows], log_std[:rows])
            if record or last:
                plan.values.append(value[:n])
                plan.seconds.append(clock())
            if training:
                grad_lambdas.append((grads[0][:n], grads[1][:n]))
                lambdas.append((mu[:n], log_std[:n]))
        plan.mu, plan.log_std = mu.detach(), log_std.detach()
        if training:
            plan.surrogate = surrogate(grad_lambdas, lambdas)
        return plan
