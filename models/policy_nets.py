"""Amortized policy networks: direct f(s) and iterative f(s, lambda, grad_lambda J)."""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mbiapo.models.mlp import mlp
from mbiapo.models.tanh_gaussian import soft_clamp_log_std


class DirectPolicyNet(nn.Module):
    """SAC's actor: obs (B, S) -> mu (B, A), log_std (B, A). ``activation`` and
    ``layer_norm`` as in ``mlp``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2,
                 activation: str = "relu", layer_norm: bool = False):
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden, layers, activation, layer_norm)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.net(obs).chunk(2, dim=-1)
        return mu, soft_clamp_log_std(log_std)


class IterativeAmortizerNet(nn.Module):
    """Learned optimizer step: ``lambda <- omega * lambda + (1 - omega) * delta``.

    Inputs: obs (B, S) and mu, log_std, dJ/dmu, dJ/dlog_std (each (B, A)). The four
    lambda/gradient blocks enter detached, each layer-normalized on its own with its own
    affine parameters (skipped when A = 1, where normalizing a single number would erase
    it); the step's only path from lambda to its output is the gated mix. A trunk of
    ``layers`` layers (``activation``, optional ``layer_norm``) feeds one head whose update
    and gate outputs start at zero, so the first step mixes ``lambda`` and ``delta`` exactly
    half and half.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2,
                 activation: str = "relu", layer_norm: bool = False):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.normalize = act_dim > 1
        self.norm_weight = nn.Parameter(torch.ones(4, act_dim))
        self.norm_bias = nn.Parameter(torch.zeros(4, act_dim))
        self.trunk = mlp(obs_dim + 4 * act_dim, None, hidden, layers, activation, layer_norm)
        # delta (mu, log_std) and gate logits (mu, log_std)
        self.head = nn.Linear(hidden, 4 * act_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def encode(self, obs: Tensor) -> Tensor:
        """The states' share of the first trunk layer, its bias included: obs (B, S) -> (B, H).
        It is the same at every step, so planners compute it once per plan."""
        first = self.trunk[0]
        return F.linear(obs, first.weight[:, : self.obs_dim], first.bias)

    def step(self, encoded: Tensor, mu: Tensor, log_std: Tensor, grad_mu: Tensor,
             grad_log_std: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step from ``encode(obs)`` (B, H); returns the new (mu, log_std)."""
        a = self.act_dim
        blocks = torch.stack([mu, log_std, grad_mu, grad_log_std], dim=1).detach()  # (B, 4, A)
        if self.normalize:
            blocks = torch.addcmul(self.norm_bias, F.layer_norm(blocks, (a,)), self.norm_weight)
        x = encoded + F.linear(blocks.flatten(1), self.trunk[0].weight[:, self.obs_dim:])
        x = self.trunk[1:](x)
        delta_mu, raw_log_std, gate_logits = self.head(x).split([a, a, 2 * a], dim=1)
        gate_mu, gate_log_std = torch.sigmoid(gate_logits).chunk(2, dim=1)
        # omega * lambda + (1 - omega) * delta
        return (torch.lerp(delta_mu, mu, gate_mu),
                torch.lerp(soft_clamp_log_std(raw_log_std), log_std, gate_log_std))

    def forward(self, obs: Tensor, mu: Tensor, log_std: Tensor, grad_mu: Tensor,
                grad_log_std: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step; returns the new (mu, log_std), each (B, A)."""
        return self.step(self.encode(obs), mu, log_std, grad_mu, grad_log_std)
