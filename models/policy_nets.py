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
        ``vjp(grad_mu, grad_log_std, factor=1)`` (each (n, A), for the first n <= B states)
        -> the gradients of ``self.parameters()`` (times ``factor``)."""
        out, net_vjp = mlp_forward_param_vjp(self.net, obs)
        mu, raw_log_std = out.chunk(2, dim=-1)

        def vjp(grad_mu: Tensor, grad_log_std: Tensor,
                factor: Tensor | float = 1.0) -> list[Tensor]:
            clamp_grad = soft_clamp_log_std_grad(raw_log_std[: grad_mu.shape[0]])
            return net_vjp(torch.cat([grad_mu, grad_log_std * clamp_grad], dim=-1).mul_(factor))

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
        a ``tape`` (no autograd), the layers write their outputs into its buffers."""
        a = self.act_dim
        k = None if tape is None else len(tape.steps)
        blocks = torch.stack([mu, log_std, grad_mu, grad_log_std], dim=1).detach()  # (B, 4, A)
        if self.normalize:
            blocks = F.layer_norm(blocks, (a,))
        if tape is not None:
            tape.blocks[:, k].copy_(blocks)
        if self.normalize:
            blocks = torch.addcmul(self.norm_bias, blocks, self.norm_weight)
        first, *rest = self.linears
        x = self._linear(first.weight[:, -4 * a:], state_part, blocks.flatten(1), tape, 0)
        for i, layer in enumerate(rest, 1):
            x = self._linear(layer.weight, layer.bias, x, tape, i)
        out = None if tape is None else tape.head[:, k]
        d_mu, raw_log_std, gate_logits = torch.addmm(
            self.head.bias, x, self.head.weight.t(), out=out).split([a, a, 2 * a], dim=1)
        if tape is not None:
            tape.steps.append((mu, log_std))
        return d_mu, soft_clamp_log_std(raw_log_std), *torch.sigmoid(gate_logits).chunk(2, 1)

    @staticmethod
    def _linear(weight: Tensor, bias: Tensor, x: Tensor, tape: "AmortizerTape | None",
                i: int) -> Tensor:
        """relu(bias + x W^T), written into the tape's buffer of trunk layer i when recording."""
        if tape is None:
            return torch.addmm(bias, x, weight.t()).relu_()
        return torch.addmm(bias, x, weight.t(), out=tape.hidden[i][:, len(tape.steps)]).relu_()

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
    def backward(self, tape: "AmortizerTape", grad_lambdas: list[tuple[Tensor, Tensor]],
                 factor: Tensor | float = 1.0) -> list[Tensor | None]:
        """Hand-written reverse pass through the K recorded steps: given d loss / d lambda_k
        from outside the net (``factor * grad_lambdas[k-1]`` for lambda_k, each pair (n, A)
        for the first n <= B recorded states), the gradients of the loss w.r.t.
        ``self.parameters()`` (None where unused).

        lambda_k = lerp(delta_k, lambda_{k-1}, omega_k) is the only path between steps (the
        net's inputs are detached). So only the recursion d lambda_{k-1} = g_{k-1} +
        omega_k * d lambda_k runs step by step; everything else runs once for all K * n rows,
        in the tape's (state, step) row order."""
        a, k = self.act_dim, len(grad_lambdas)
        n = grad_lambdas[0][0].shape[0]
        head = tape.head[:n, :k]  # (n, K, 4A): delta_mu, raw log-std, gate logits (mu, log_std)
        gates = torch.sigmoid(head[..., 2 * a:])  # (n, K, 2A): omega_mu, omega_log_std
        d_lambda = head.new_empty(n, k, 2 * a)  # d loss / d lambda_k, [mu | log_std]
        for i in reversed(range(k)):
            d = torch.cat(grad_lambdas[i], dim=1)
            d_lambda[:, i] = d if i == k - 1 else torch.addcmul(d, d_lambda[:, i + 1],
                                                                gates[:, i + 1])
        raw_log_std = head[..., a:2 * a]
        delta = torch.cat([head[..., :a], soft_clamp_log_std(raw_log_std)], dim=-1)
        lambdas = torch.stack([torch.cat(step, dim=1)[:n] for step in tape.steps[:k]], dim=1)
        keep = 1 - gates
        grad_delta = d_lambda * keep
        grad_delta[..., a:] *= soft_clamp_log_std_grad(raw_log_std)
        grad_gates = d_lambda * (lambdas - delta) * gates * keep
        rows = n * k
        grad = torch.cat([grad_delta, grad_gates], dim=-1).view(rows, 4 * a).mul_(factor)

        def recorded(buffer: Tensor) -> Tensor:  # (B, K, ...) -> (n K, ...)
            return buffer[:n, :k].reshape(rows, -1)

        hidden = [recorded(h) for h in tape.hidden]
        grads = {self.head.weight: grad.t() @ hidden[-1], self.head.bias: grad.sum(0)}
        grad = grad @ self.head.weight
        for layer, h, h_in in zip(reversed(self.linears[1:]), reversed(hidden[1:]),
                                  reversed(hidden[:-1])):
            grad = relu_backward(grad, h)
            grads[layer.weight], grads[layer.bias] = grad.t() @ h_in, grad.sum(0)
            grad = grad @ layer.weight
        grad = relu_backward(grad, hidden[0])  # d loss / d first layer's pre-activation
        per_state = grad.view(n, k, grad.shape[1]).sum(1)  # (n, H)
        first, column = self.linears[0], per_state.sum(0)
        # the blocks enter as normalized * w + b: with G^T N from the recorded (normalized)
        # blocks N, d/dW = G^T N * w + colsum(G) b^T, d/dw = colsum(W * G^T N),
        # d/db = colsum(G) W (W: the first layer's block columns)
        grad_weight = grad.t() @ recorded(tape.blocks)  # (H, 4A)
        if self.normalize:
            w_blocks = first.weight[:, -4 * a:]
            grads[self.norm_weight] = (w_blocks * grad_weight).sum(0).view(4, a)
            grads[self.norm_bias] = (column @ w_blocks).view(4, a)
            grad_weight = torch.addr(grad_weight * self.norm_weight.flatten(), column,
                                     self.norm_bias.flatten())
        grads[first.weight] = torch.cat([per_state.t() @ tape.obs[:n], grad_weight], dim=1)
        grads[first.bias] = column
        return [grads.get(p) for p in self.parameters()]


class AmortizerTape:
    """What ``IterativeAmortizerNet.backward`` needs from up to ``iters`` steps on the B states
    obs (B, S), recorded by ``step(..., tape=)`` without autograd: per state and step, the
    (normalized) lambda/gradient blocks, each trunk layer's activations and the head's
    outputs, in (B, K, ...) buffers, so that the first n states' rows of all steps are one
    contiguous batch for the backward."""

    def __init__(self, net: IterativeAmortizerNet, obs: Tensor, iters: int):
        b, a = obs.shape[0], net.act_dim
        self.obs = obs
        self.blocks = obs.new_empty(b, iters, 4, a)
        self.hidden = [obs.new_empty(b, iters, layer.out_features) for layer in net.linears]
        self.head = obs.new_empty(b, iters, 4 * a)
        self.steps: list[tuple[Tensor, Tensor]] = []  # lambda before each step: (mu, log_std)
