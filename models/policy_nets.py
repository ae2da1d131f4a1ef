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

    def step_terms(self, obs: Tensor, mu: Tensor, log_std: Tensor, grad_mu: Tensor,
                   grad_log_std: Tensor) -> tuple[Tensor, Tensor]:
        """Update ``delta`` and gate ``omega``, each (B, 2A) ordered as (mu, log_std)."""
        blocks = torch.stack([mu, log_std, grad_mu, grad_log_std], dim=1).detach()  # (B, 4, A)
        if self.normalize:
            blocks = F.layer_norm(blocks, (self.act_dim,)) * self.norm_weight + self.norm_bias
        out = self.head(self.trunk(torch.cat([obs, blocks.flatten(1)], dim=-1)))
        a = self.act_dim
        delta = torch.cat([out[:, :a], soft_clamp_log_std(out[:, a: 2 * a])], dim=-1)
        return delta, torch.sigmoid(out[:, 2 * a:])

    def forward(self, obs: Tensor, mu: Tensor, log_std: Tensor, grad_mu: Tensor,
                grad_log_std: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step; returns the new (mu, log_std), each (B, A)."""
        delta, gate = self.step_terms(obs, mu, log_std, grad_mu, grad_log_std)
        lam = torch.lerp(delta, torch.cat([mu, log_std], dim=-1), gate)  # gate*lam + (1-gate)*delta
        return lam[:, : self.act_dim], lam[:, self.act_dim:]
