"""An ensemble of Q-networks evaluated as one batched computation (stacked weights)."""

import math

import torch
from torch import Tensor, nn


class QEnsemble(nn.Module):
    """E independent MLPs ``Q_i(s, a)`` with stacked weights of shape (E, in, out).

    ``forward(obs (..., S), act (..., A)) -> (E, ...)``. The first layer is a single GEMM
    for all members; later layers are one ``baddbmm`` each. Initialised like ``nn.Linear``.
    """

    def __init__(self, obs_dim: int, act_dim: int, members: int = 2, hidden: int = 256,
                 layers: int = 2):
        super().__init__()
        dims = [obs_dim + act_dim] + [hidden] * layers + [1]
        self.members = members
        self.n_layers = len(dims) - 1
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)
            b = torch.empty(members, 1, fan_out).uniform_(-bound, bound)
            self.register_parameter(f"w{i}", nn.Parameter(w))
            self.register_parameter(f"b{i}", nn.Parameter(b))

    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """[(weight (E, in, out), bias (E, 1, out))] from input to output."""
        return [(getattr(self, f"w{i}"), getattr(self, f"b{i}")) for i in range(self.n_layers)]

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        x = torch.cat([obs, act], dim=-1)
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        (w0, b0), *hidden, (w_out, b_out) = self.layers()
        e, d_in, h = w0.shape
        # (M, D) @ (D, E*H) -> (E, M, H)
        x = (x @ w0.permute(1, 0, 2).reshape(d_in, e * h)).view(-1, e, h).transpose(0, 1)
        x = torch.relu(x + b0)
        for w, b in hidden:
            x = torch.relu(torch.baddbmm(b, x, w))
        # the width-1 output layer as multiply-and-sum: much faster than a batched GEMV
        x = (x * w_out.transpose(1, 2)).sum(-1) + b_out[:, :, 0]
        return x.reshape(e, *lead)


def pessimistic(q: Tensor, beta: float) -> Tensor:
    """``mean_i Q_i - beta * std_i Q_i`` over dim 0 (population std: beta=1, E=2 is the min)."""
    return q.mean(0) - beta * q.std(0, correction=0)
