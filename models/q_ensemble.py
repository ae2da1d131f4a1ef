"""An ensemble of Q-networks evaluated as one batched computation (stacked weights)."""

import torch
from torch import Tensor, nn

from mbiapo.models.mlp import ensemble_mlp


class QEnsemble(nn.Module):
    """E independent MLPs ``Q_i(s, a)``: ``forward(obs (..., S), act (..., A)) -> (E, ...)``.

    One ``baddbmm`` per layer for all members (``ensemble_mlp``); ``activation`` and
    ``layer_norm`` as in ``mlp``.
    """

    def __init__(self, obs_dim: int, act_dim: int, members: int = 2, hidden: int = 256,
                 layers: int = 2, activation: str = "relu", layer_norm: bool = False):
        super().__init__()
        self.members = members
        self.net = ensemble_mlp(members, obs_dim + act_dim, 1, hidden, layers, activation,
                                layer_norm)

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        x = cat_broadcast(obs, act)
        lead = x.shape[:-1]
        x = x.reshape(1, -1, x.shape[-1]).expand(self.members, -1, -1)
        return self.net(x).reshape(self.members, *lead)


def cat_broadcast(obs: Tensor, act: Tensor) -> Tensor:
    """[obs, act] along the last dimension, the leading dimensions broadcast: (..., S + A)."""
    lead = torch.broadcast_shapes(obs.shape[:-1], act.shape[:-1])
    return torch.cat([obs.expand(*lead, -1), act.expand(*lead, -1)], dim=-1)


def pessimistic(q: Tensor, beta: float) -> Tensor:
    """``mean_i Q_i - beta * std_i Q_i`` over dim 0 (population std: beta=1, E=2 is the min).
    Differentiable everywhere: where all members agree, the gradient is the mean's."""
    mean = q.mean(0)
    return mean - beta * (q - mean).pow(2).mean(0).clamp_min(1e-24).sqrt()
