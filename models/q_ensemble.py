"""An ensemble of Q-networks evaluated as one batched computation (stacked weights)."""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mbiapo.models.mlp import stacked_linear


class QEnsemble(nn.Module):
    """E independent MLPs ``Q_i(s, a)`` with stacked weights of shape (E, in, out).

    ``forward(obs (..., S), act (..., A)) -> (E, ...)``: one ``baddbmm`` per layer for all
    members (the width-1 output layer is a multiply-and-sum). Initialised like ``nn.Linear``.
    """

    def __init__(self, obs_dim: int, act_dim: int, members: int = 2, hidden: int = 256,
                 layers: int = 2):
        super().__init__()
        dims = [obs_dim + act_dim] + [hidden] * layers + [1]
        self.members = members
        self.n_layers = len(dims) - 1
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            w, b = stacked_linear(members, fan_in, fan_out)
            self.register_parameter(f"w{i}", w)
            self.register_parameter(f"b{i}", b)

    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """[(weight (E, in, out), bias (E, 1, out))] from input to output."""
        return [(getattr(self, f"w{i}"), getattr(self, f"b{i}")) for i in range(self.n_layers)]

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        x = torch.cat([obs, act], dim=-1)
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        (w0, b0), *hidden, (w_out, b_out) = self.layers()
        e = w0.shape[0]
        x = torch.relu(torch.baddbmm(b0, x.expand(e, -1, -1), w0))  # (E, M, H)
        for w, b in hidden:
            x = torch.relu(torch.baddbmm(b, x, w))
        # width-1 output layer: multiply-and-sum is much faster than a batched GEMV on CPU
        x = (x * w_out.transpose(1, 2)).sum(-1) + b_out[:, :, 0]
        return x.reshape(e, *lead)


    @torch.no_grad()
    def forward_vjp(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """``forward`` plus a hand-written vector-Jacobian product w.r.t. the actions.

        Returns q (E, ...) and ``vjp(grad_q (E, ...)) -> grad_act (..., A)``. No autograd
        graph is built: planners call this at every iteration, where autograd's bookkeeping
        costs more than the arithmetic at small batches.
        """
        x = torch.cat([obs, act], dim=-1)
        lead, act_dim = x.shape[:-1], act.shape[-1]
        x = x.reshape(-1, x.shape[-1])
        (w0, b0), *hidden, (w_out, b_out) = self.layers()
        e = w0.shape[0]
        h = torch.relu(torch.baddbmm(b0, x.expand(e, -1, -1), w0))
        activations = [h]
        for w, b in hidden:
            h = torch.relu(torch.baddbmm(b, h, w))
            activations.append(h)
        q = (h * w_out.transpose(1, 2)).sum(-1) + b_out[:, :, 0]

        def vjp(grad_q: Tensor) -> Tensor:
            g = grad_q.reshape(e, -1, 1) * w_out.transpose(1, 2)  # (E, M, H)
            for (w, _), a in zip(reversed(hidden), reversed(activations[1:])):
                g = torch.bmm(_relu_backward(g, a), w.transpose(1, 2))
            g = torch.bmm(_relu_backward(g, activations[0]), w0[:, -act_dim:].transpose(1, 2))
            return g.sum(0).reshape(*lead, act_dim)

        return q.reshape(e, *lead), vjp


def _relu_backward(grad: Tensor, activation: Tensor) -> Tensor:
    """grad * (activation > 0) in one kernel (the one autograd uses for ReLU)."""
    return torch.ops.aten.threshold_backward(grad, activation, 0)


def pessimistic(q: Tensor, beta: float) -> Tensor:
    """``mean_i Q_i - beta * std_i Q_i`` over dim 0 (population std: beta=1, E=2 is the min).
    Differentiable everywhere: where all members agree, the gradient is the mean's."""
    mean = q.mean(0)
    return mean - beta * (q - mean).pow(2).mean(0).clamp_min(1e-24).sqrt()


def pessimistic_with_grad(q: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """``pessimistic(q, beta)`` (...) and its gradient w.r.t. q (E, ...)."""
    e = q.shape[0]
    centered = q - q.mean(0, keepdim=True)
    std = centered.pow(2).mean(0, keepdim=True).sqrt()
    value = (q.mean(0, keepdim=True) - beta * std).squeeze(0)
    return value, 1.0 / e - (beta / e) * centered / std.clamp_min(1e-12)
