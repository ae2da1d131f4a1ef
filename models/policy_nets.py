"""Amortized policy networks: direct f(s) and iterative f(s, lambda, grad_lambda J)."""

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mbiapo.models.mlp import mlp, mlp_forward_param_vjp, relu_backward
from mbiapo.models.tanh_gaussian import soft_clamp_log_std, soft_clamp_log_std_grad


class DirectPolicyNet(nn.Module):
    """SAC's actor: obs (B, S) -> mu (B, A), log_std (B, A)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden, layers)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.net(obs).chunk(2, dim=-1)
        return mu, soft_clamp_log_std(log_std)

    @torch.no_grad()
    def forward_vjp(self, obs: Tensor) -> tuple[Tensor, Tensor, Callable[..., list[Tensor]]]:
        """``forward`` without autograd, plus a hand-written backward: mu, log_std (B, A) and
        ``vjp(grad_mu, grad_log_std)`` (each (n, A), for the first n <= B states) -> the
        gradients of ``self.parameters()``."""
        out, net_vjp = mlp_forward_param_vjp(self.net, obs)
        mu, raw_log_std = out.chunk(2, dim=-1)

        def vjp(grad_mu: Tensor, grad_log_std: Tensor) -> list[Tensor]:
            clamp_grad = soft_clamp_log_std_grad(raw_log_std[: grad_mu.shape[0]])
            return net_vjp(torch.cat([grad_mu, grad_log_std * clamp_grad], dim=-1))

        return mu, soft_clamp_log_std(raw_log_std), vjp


class IterativeAmortizerNet(nn.Module):
    """Learned optimizer step: ``lambda <- omega * lambda + (1 - omega) * delta``.

    Inputs: obs (B, S) and mu, log_std, dJ/dmu, dJ/dlog_std (each (B, A), detached). Each of
    the four lambda/gradient blocks is layer-normalized on its own (skipped when A = 1, where
    normalizing a single number would erase it). Update and gate heads start at zero, so the
    first step mixes ``lambda`` and ``delta`` exactly half and half.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.act_dim = act_dim
        self.normalize = act_dim > 1
        # per-block layer-norm affine parameters, one row per block
        self.norm_weight = nn.Parameter(torch.ones(4, act_dim))
        self.norm_bias = nn.Parameter(torch.zeros(4, act_dim))
        self.trunk = nn.Sequential(mlp(obs_dim + 4 * act_dim, hidden, hidden, layers - 1),
                                   nn.ReLU())
        # one zero-initialised head: delta (mu, log_std) and gate logits (mu, log_std)
        self.head = nn.Linear(hidden, 4 * act_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.linears = [m for m in self.trunk.modules() if isinstance(m, nn.Linear)]

    def state_part(self, obs: Tensor) -> Tensor:
        """The states' share of the first trunk layer, bias included: obs (B, S) -> (B, H).
        It is the same at every iteration, so planners compute it once per plan."""
        first = self.trunk[0][0]
        return F.linear(obs, first.weight[:, : obs.shape[-1]], first.bias)

    def step_terms(self, state_part: Tensor, mu: Tensor, log_std: Tensor, grad_mu: Tensor,
                   grad_log_std: Tensor, tape: "AmortizerTape | None" = None
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Update ``delta`` and gate ``omega`` for mu and log_std, each (B, A): delta_mu,
        delta_log_std, omega_mu, omega_log_std. Layers are applied as functions, not module
        calls: this runs K times per plan, where module-call overhead shows at batch 1. With
        a ``tape`` (no autograd), the activations go to its buffers for ``backward``."""
        a = self.act_dim
        blocks = torch.stack([mu, log_std, grad_mu, grad_log_std], dim=1).detach()  # (B, 4, A)
        if self.normalize:
            normalized = F.layer_norm(blocks, (a,))
            if tape is not None:
                normalized = tape.normalized[len(tape.steps)].copy_(normalized)
            blocks = torch.addcmul(self.norm_bias, normalized, self.norm_weight)
        blocks = blocks.flatten(1)
        if tape is not None:
            blocks = tape.inputs[len(tape.steps)].copy_(blocks)
        first, *rest = self.linears
        x = self._linear_relu(first.weight[:, -4 * a:], state_part, blocks, tape, 0)
        for i, layer in enumerate(rest, 1):
            x = self._linear_relu(layer.weight, layer.bias, x, tape, i)
        d_mu, raw_log_std, gate_logits = F.linear(x, self.head.weight, self.head.bias).split(
            [a, a, 2 * a], dim=1)
        terms = d_mu, soft_clamp_log_std(raw_log_std), *torch.sigmoid(gate_logits).chunk(2, 1)
        if tape is not None:
            tape.steps.append((mu, log_std, raw_log_std, *terms))
        return terms

    @staticmethod
    def _linear_relu(weight: Tensor, bias: Tensor, x: Tensor, tape: "AmortizerTape | None",
                     i: int) -> Tensor:
        """relu(bias + x W^T), written into the tape's buffer of layer i when recording."""
        if tape is None:
            return torch.addmm(bias, x, weight.t()).relu()
        return torch.addmm(bias, x, weight.t(), out=tape.hidden[i][len(tape.steps)]).relu_()

    def step(self, state_part: Tensor, mu: Tensor, log_std: Tensor, grad_mu: Tensor,
             grad_log_std: Tensor, tape: "AmortizerTape | None" = None) -> tuple[Tensor, Tensor]:
        """One optimizer step from ``state_part(obs)``; returns the new (mu, log_std)."""
        d_mu, d_log_std, g_mu, g_log_std = self.step_terms(state_part, mu, log_std, grad_mu,
                                                           grad_log_std, tape)
        # omega * lambda + (1 - omega) * delta
        return torch.lerp(d_mu, mu, g_mu), torch.lerp(d_log_std, log_std, g_log_std)

    def forward(self, obs: Tensor, mu: Tensor, log_std: Tensor, grad_mu: Tensor,
                grad_log_std: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step; returns the new (mu, log_std), each (B, A)."""
        return self.step(self.state_part(obs), mu, log_std, grad_mu, grad_log_std)

    @torch.no_grad()
    def backward(self, tape: "AmortizerTape",
                 grad_lambdas: list[tuple[Tensor, Tensor]]) -> list[Tensor | None]:
        """Hand-written reverse pass through the K recorded steps: given d loss / d lambda_k
        from outside the net (``grad_lambdas[k-1]`` for lambda_k, each pair (n, A) for the
        first n <= B recorded states), the gradients of the loss w.r.t.
        ``self.parameters()`` (None where unused).

        lambda_k = lerp(delta_k, lambda_{k-1}, omega_k) is the only path between steps (the
        net's inputs are detached), so the elementwise chain runs first, step by step, and
        the layers' backward then runs once for all K * n rows."""
        a, grad_out = self.act_dim, []
        n = grad_lambdas[0][0].shape[0]
        d_mu = d_log_std = None
        for step, (gm, gs) in zip(reversed(tape.steps), reversed(grad_lambdas)):
            mu, log_std, raw_log_std, delta_mu, delta_log_std, g_mu, g_log_std = (
                t[:n] for t in step)
            d_mu = gm if d_mu is None else gm + d_mu
            d_log_std = gs if d_log_std is None else gs + d_log_std
            grad_out.append(torch.cat([
                d_mu * (1 - g_mu),
                d_log_std * (1 - g_log_std) * soft_clamp_log_std_grad(raw_log_std),
                d_mu * (mu - delta_mu) * g_mu * (1 - g_mu),
                d_log_std * (log_std - delta_log_std) * g_log_std * (1 - g_log_std)], dim=1))
            d_mu, d_log_std = d_mu * g_mu, d_log_std * g_log_std  # into lambda_{k-1}
        k = len(grad_out)
        rows = k * n

        def recorded(buffer: Tensor) -> Tensor:  # (K, B, ...) -> (K n, ...), steps in order
            return buffer[:k, :n].reshape(rows, *buffer.shape[2:])

        grad = torch.cat(grad_out[::-1])  # (K n, 4A)
        hidden = [recorded(h) for h in tape.hidden]
        grads = {self.head.weight: grad.t() @ hidden[-1], self.head.bias: grad.sum(0)}
        grad = grad @ self.head.weight
        for layer, h, h_in in zip(reversed(self.linears[1:]), reversed(hidden[1:]),
                                  reversed(hidden[:-1])):
            grad = relu_backward(grad, h)
            grads[layer.weight], grads[layer.bias] = grad.t() @ h_in, grad.sum(0)
            grad = grad @ layer.weight
        grad = relu_backward(grad, hidden[0])
        first = self.linears[0]
        per_state = grad.view(k, n, grad.shape[1]).sum(0)  # (n, H)
        grads[first.weight] = torch.cat([per_state.t() @ tape.obs[:n],
                                         grad.t() @ recorded(tape.inputs)], dim=1)
        grads[first.bias] = per_state.sum(0)
        if self.normalize:
            grad_blocks = (grad @ first.weight[:, -4 * a:]).view(rows, 4, a)
            grads[self.norm_weight] = (grad_blocks * recorded(tape.normalized)).sum(0)
            grads[self.norm_bias] = grad_blocks.sum(0)
        return [grads.get(p) for p in self.parameters()]


class AmortizerTape:
    """What ``IterativeAmortizerNet.backward`` needs from up to ``iters`` steps on the B states
    obs (B, S), recorded by ``step(..., tape=)`` without autograd: each trunk layer's
    activations in one (K, B, H) buffer, so the backward runs all steps as one batch."""

    def __init__(self, net: IterativeAmortizerNet, obs: Tensor, iters: int):
        b, a = obs.shape[0], net.act_dim
        self.obs = obs
        self.inputs = obs.new_empty(iters, b, 4 * a)  # the first layer's (normalized) blocks
        self.normalized = obs.new_empty(iters, b, 4, a) if net.normalize else None
        self.hidden = [obs.new_empty(iters, b, layer.out_features) for layer in net.linears]
        # per step: lambda before it (mu, log_std), the raw log-std output, then step_terms
        self.steps: list[tuple[Tensor, ...]] = []
