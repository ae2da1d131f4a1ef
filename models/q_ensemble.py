"""An ensemble of Q-networks evaluated as one batched computation (stacked weights)."""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mbiapo.models.mlp import relu_backward, stacked_linear


class QEnsemble(nn.Module):
    """E independent MLPs ``Q_i(s, a)`` with stacked weights of shape (E, in, out).

    ``forward(obs (..., S), act (..., A)) -> (E, ...)``: one ``baddbmm`` per layer for all
    members (the width-1 output layer as a row times a matrix). Initialised like ``nn.Linear``.
    """

    def __init__(self, obs_dim: int, act_dim: int, members: int = 2, hidden: int = 256,
                 layers: int = 2):
        super().__init__()
        dims = [obs_dim + act_dim] + [hidden] * layers + [1]
        self.members = members
        self.n_layers = len(dims) - 1
        self._names = [(f"w{i}", f"b{i}") for i in range(self.n_layers)]
        for (w_name, b_name), fan_in, fan_out in zip(self._names, dims[:-1], dims[1:]):
            w, b = stacked_linear(members, fan_in, fan_out)
            self.register_parameter(w_name, w)
            self.register_parameter(b_name, b)

    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """[(weight (E, in, out), bias (E, 1, out))] from input to output."""
        params = self._parameters  # direct lookups: Module.__getattr__ costs ~4 us each
        return [(params[w], params[b]) for w, b in self._names]

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        x = torch.cat([obs, act], dim=-1)
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        (w0, b0), *hidden, (w_out, b_out) = self.layers()
        e = w0.shape[0]
        x = torch.baddbmm(b0, x.expand(e, -1, -1), w0).relu_()  # (E, M, H)
        for w, b in hidden:
            x = torch.baddbmm(b, x, w).relu_()
        return _output_layer(x, w_out, b_out).reshape(e, *lead)

    @torch.no_grad()
    def state_part(self, obs: Tensor) -> Tensor:
        """The states' share of the first layer, bias included: obs (B, S) -> (E, B, 1, H).
        Planners score many actions per state; computing this once per batch of states
        leaves ``forward_vjp`` only the actions' A columns of the first layer."""
        w0, b0 = self.w0, self.b0
        x = obs.reshape(1, -1, obs.shape[-1]).expand(w0.shape[0], -1, -1)
        return torch.baddbmm(b0, x, w0[:, : obs.shape[-1]]).unsqueeze(2)

    @torch.no_grad()
    def forward_vjp(self, state_part: Tensor,
                    act: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """``forward`` for actions act (B, N, A) at the states of ``state_part(obs)``, plus a
        hand-written vector-Jacobian product w.r.t. the actions.

        Returns q (E, B, N) and ``vjp(grad_q (E, B, N)) -> grad_act (B, N, A)``. No autograd
        graph is built: planners call this at every iteration, where autograd's bookkeeping
        costs more than the arithmetic at small batches.
        """
        e, b, _, width = state_part.shape
        n, act_dim = act.shape[1], act.shape[2]
        w_act = self.w0[:, -act_dim:]
        pre = torch.bmm(act.reshape(1, b * n, act_dim).expand(e, -1, -1), w_act)
        q, pre_vjp = self._vjp_from_first_layer(pre.view(e, b, n, width).add_(state_part))

        def vjp(grad_q: Tensor) -> Tensor:
            per_member = torch.bmm(pre_vjp(), w_act.transpose(1, 2))  # dQ_i/da: (E, B N, A)
            return (per_member * grad_q.reshape(e, -1, 1)).sum(0).view(b, n, act_dim)

        return q.view(e, b, n), vjp

    @torch.no_grad()
    def forward_input_vjp(self, obs: Tensor, act: Tensor
                          ) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor, Tensor]]]:
        """``forward(obs (..., S), act (..., A)) -> q (E, ...)`` plus the vector-Jacobian
        product w.r.t. both inputs: ``vjp(grad_q (E, ...)) -> (grad_obs, grad_act)``."""
        x = torch.cat([obs, act], dim=-1)
        lead, obs_dim = x.shape[:-1], obs.shape[-1]
        w0, b0 = self.w0, self.b0
        e = w0.shape[0]
        q, pre_vjp = self._vjp_from_first_layer(
            torch.baddbmm(b0, x.reshape(1, -1, x.shape[-1]).expand(e, -1, -1), w0))

        def vjp(grad_q: Tensor) -> tuple[Tensor, Tensor]:
            per_member = torch.bmm(pre_vjp(), w0.transpose(1, 2))  # dQ_i/dx: (E, M, S + A)
            grad_x = (per_member * grad_q.reshape(e, -1, 1)).sum(0).view(*lead, -1)
            return grad_x[..., :obs_dim], grad_x[..., obs_dim:]

        return q.view(e, *lead), vjp

    @torch.no_grad()
    def forward_param_vjp(self, obs: Tensor, act: Tensor
                          ) -> tuple[Tensor, Callable[[Tensor], list[Tensor]]]:
        """``forward(obs (M, S), act (M, A)) -> q (E, M)`` plus the vector-Jacobian product
        w.r.t. the parameters: ``vjp(grad_q (E, M))`` -> the gradients of
        ``self.parameters()``, in that order (critic training without autograd)."""
        x = torch.cat([obs, act], dim=-1)
        w0, b0 = self.w0, self.b0
        x_e = x.expand(w0.shape[0], -1, -1)
        q, pre_vjp = self._vjp_from_first_layer(torch.baddbmm(b0, x_e, w0))

        def vjp(grad_q: Tensor) -> list[Tensor]:
            later: list[Tensor] = []
            grad_pre = pre_vjp(grad_q, later)
            first = [torch.bmm(x_e.transpose(1, 2), grad_pre), grad_pre.sum(1, keepdim=True)]
            return first + later[::-1]

        return q, vjp

    def _vjp_from_first_layer(self, pre: Tensor) -> tuple[Tensor, Callable[..., Tensor]]:
        """The layers after the first one's pre-activation ``pre`` (E, ..., H), which it
        overwrites: q (E, M) and ``vjp(grad_q (E, ...) or None, param_grads=None) -> grad_pre
        (E, M, H)``. Without grad_q, the result is each member's own gradient dQ_i/dpre: input
        gradients then scale by grad_q after the first layer, at A (or S + A) columns instead
        of H. Given a list, the vjp also appends the later layers' parameter gradients to it,
        last layer first, bias before weight."""
        _, *hidden, (w_out, b_out) = self.layers()
        e, width = pre.shape[0], pre.shape[-1]
        h = pre.relu_().view(e, -1, width)
        activations = [h]
        for w, bias in hidden:
            h = torch.baddbmm(bias, h, w).relu_()
            activations.append(h)
        q = _output_layer(h, w_out, b_out)

        def vjp(grad_q: Tensor | None = None, param_grads: list[Tensor] | None = None
                ) -> Tensor:
            if grad_q is None:
                g = relu_backward(w_out.transpose(1, 2).expand_as(h), h)  # (E, M, H)
            else:
                grad_q = grad_q.reshape(e, -1, 1)
                if param_grads is not None:
                    # (E, 1, M) @ (E, M, H): the weight's gradient as a row, same memory as
                    # (E, H, 1)
                    param_grads += [grad_q.sum(1, keepdim=True), torch.bmm(
                        grad_q.transpose(1, 2), activations[-1]).view(e, -1, 1)]
                g = relu_backward(grad_q * w_out.transpose(1, 2), h)
            for (w, _), a_in in zip(reversed(hidden), reversed(activations[:-1])):
                if param_grads is not None:
                    param_grads += [g.sum(1, keepdim=True), torch.bmm(a_in.transpose(1, 2), g)]
                g = relu_backward(torch.bmm(g, w.transpose(1, 2)), a_in)
            return g

        return q, vjp


def _output_layer(h: Tensor, w_out: Tensor, b_out: Tensor) -> Tensor:
    """The width-1 output layer: h (E, M, H), w_out (E, H, 1), b_out (E, 1, 1) -> (E, M).
    Computed as the row w_out^T times h^T: a batched GEMV with a column (E, M, H) @ (E, H, 1)
    is several times slower on CPU."""
    return torch.baddbmm(b_out, w_out.transpose(1, 2), h.transpose(1, 2))[:, 0]


def pessimistic(q: Tensor, beta: float) -> Tensor:
    """``mean_i Q_i - beta * std_i Q_i`` over dim 0 (population std: beta=1, E=2 is the min).
    Differentiable everywhere: where all members agree, the gradient is the mean's."""
    mean = q.mean(0)
    return mean - beta * (q - mean).pow(2).mean(0).clamp_min(1e-24).sqrt()


def pessimistic_with_grad(q: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """``pessimistic(q, beta)`` (...) and its gradient w.r.t. q (E, ...)."""
    e = q.shape[0]
    mean = q.mean(0, keepdim=True)
    centered = q - mean
    std = centered.square().mean(0, keepdim=True).sqrt_()  # torch.std_mean over dim 0 is slow
    value = torch.add(mean, std, alpha=-beta).squeeze(0)
    weights = centered.div_(std.clamp_min_(1e-12)).mul_(-beta / e).add_(1.0 / e)
    return value, weights
