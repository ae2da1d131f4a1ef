"""Value estimators: Q-hat(s, a) for batches of states and sampled actions."""

import torch
from torch import Tensor

from mbiapo.models.q_ensemble import QEnsemble, pessimistic, pessimistic_with_grad


class ModelFreeValue:
    """Pessimistic ensemble estimate ``mean_i Q_i - beta std_i Q_i``."""

    def __init__(self, q: QEnsemble):
        self.q_net = q

    def __call__(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (B, S), actions (B, N, A) -> (B, N)."""
        obs = obs.unsqueeze(1).expand(-1, actions.shape[1], -1)
        return pessimistic(self.q_net(obs, actions), beta)

    @torch.no_grad()
    def value_and_grad(self, obs: Tensor, actions: Tensor, beta: float) -> tuple[Tensor, Tensor]:
        """Q-hat (B, N) and dQ-hat/da (B, N, A), by the ensemble's hand-written VJP."""
        obs = obs.unsqueeze(1).expand(-1, actions.shape[1], -1)
        q, vjp = self.q_net.forward_vjp(obs, actions)
        value, weights = pessimistic_with_grad(q, beta)
        return value, vjp(weights)
