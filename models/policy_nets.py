"""Amortized policy networks: direct f(s) and iterative f(s, lambda, grad_lambda J)."""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mbiapo.models.mlp import mlp
from mbiapo.models.tanh_gaussian import soft_clamp_log_std


class DirectPolicyNet(nn.Module):
    """SAC's actor: obs (B, S) -> mu (B, A), log_std (B, A)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden, layers)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.net(obs).chunk(2, dim=-1)
        return mu, soft_clamp_log_std(log_std)


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
                   grad_log_std: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Update ``delta`` and gate ``omega`` for mu and log_std, each (B, A): delta_mu,
        delta_log_std, omega_mu, omega_log_std. Layers are applied as functions, not module
        calls: this runs K times per plan, where module-call overhead shows at batch 1."""
        a = self.act_dim
        blocks = torch.stack([mu, log_std, grad_mu, grad_log_std], dim=1).detach()  # (B, 4, A)
        if self.normalize:
            blocks = torch.addcmul(self.norm_bias, F.layer_norm(blocks, (a,)), self.norm_weight)
        first, *rest = self.linears
        x = torch.addmm(state_part, blocks.flatten(1), first.weight[:, -4 * a:].t()).relu()
        for layer in rest:
            x = F.linear(x, layer.weight, layer.bias).relu()
        d_mu, raw_log_std, gate_logits = F.linear(x, self.head.weight, self.head.bias).split(
            [a, a, 2 * a], dim=1)
        return d_mu, soft_clamp_log_std(raw_log_std), *torch.sigmoid(gate_logits).chunk(2, 1)

    def step(self, state_part: Tensor, mu: Tensor, log_std: Tensor, grad_mu: Tensor,
             grad_log_std: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step from ``state_part(obs)``; returns the new (mu, log_std)."""
        d_mu, d_log_std, g_mu, g_log_std = self.step_terms(state_part, mu, log_std, grad_mu,
                                                           grad_log_std)
        # omega * lambda + (1 - omega) * delta
        return torch.lerp(d_mu, mu, g_mu), torch.lerp(d_log_std, log_std, g_log_std)

    def forward(self, obs: Tensor, mu: Tensor, log_std: Tensor, grad_mu: Tensor,
                grad_log_std: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step; returns the new (mu, log_std), each (B, A)."""
        return self.step(self.state_part(obs), mu, log_std, grad_mu, grad_log_std)
