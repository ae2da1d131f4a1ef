"""Learned environment model: residual Gaussian dynamics, Gaussian reward, termination.

Three separate MLPs (paper Table 8: 2x256, LayerNorm, LeakyReLU) run as one stacked
computation, like the Q ensemble. Inputs are normalized with running statistics; the
dynamics network predicts the normalized change ``(s' - s - m_delta) / sd_delta`` and the
reward network the normalized reward, each with a learned per-dimension log-std.
"""

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mbiapo.models.mlp import ensemble_mlp
from mbiapo.models.normalizer import RunningNormalizer
from mbiapo.models.tanh_gaussian import soft_clamp_log_std

DYNAMICS, REWARD, TERMINATION = range(3)


class Prediction(NamedTuple):
    """Mean next state (..., S), mean reward (...), probability the episode goes on (...)."""

    next_obs: Tensor
    reward: Tensor
    cont: Tensor


class WorldModel(nn.Module):
    """``forward(obs (..., S), act (..., A)) -> Prediction``, differentiable w.r.t. both.
    ``activation`` and ``layer_norm`` as in ``mlp`` (the paper's: leaky_relu with layer norm)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2,
                 activation: str = "leaky_relu", layer_norm: bool = True):
        super().__init__()
        self.obs_dim = obs_dim
        self.obs_norm = RunningNormalizer(obs_dim)
        self.delta_norm = RunningNormalizer(obs_dim)
        self.reward_norm = RunningNormalizer(1)
        # the three networks share one stacked layout; the output layer is obs_dim wide for
        # all of them, and reward and termination read its first column
        self.nets = ensemble_mlp(3, obs_dim + act_dim, obs_dim, hidden, layers, activation,
                                 layer_norm)
        self.dynamics_log_std = nn.Parameter(torch.zeros(obs_dim))
        self.reward_log_std = nn.Parameter(torch.zeros(()))

    def _outputs(self, obs: Tensor, act: Tensor) -> Tensor:
        """(..., S), (..., A) -> (3, M, S) raw outputs of the three networks, M = prod(...)."""
        x = torch.cat([self.obs_norm.normalize(obs), act], dim=-1)
        return self.nets(x.reshape(1, -1, x.shape[-1]).expand(3, -1, -1))

    def forward(self, obs: Tensor, act: Tensor) -> Prediction:
        """Mean predictions for obs (..., S), act (..., A)."""
        out, lead = self._outputs(obs, act), obs.shape[:-1]
        next_obs = obs + self.delta_norm.denormalize(out[DYNAMICS].reshape(*lead, -1))
        reward = self.reward_norm.denormalize(out[REWARD, :, :1]).reshape(lead)
        cont = torch.sigmoid(-out[TERMINATION, :, 0]).reshape(lead)
        return Prediction(next_obs, reward, cont)

    @torch.no_grad()
    def update_statistics(self, obs: Tensor, rew: Tensor, next_obs: Tensor) -> None:
        """Merge a training batch into the normalizers: obs, next_obs (B, S), rew (B,)."""
        self.obs_norm.update(obs)
        self.delta_norm.update(next_obs - obs)
        self.reward_norm.update(rew.unsqueeze(-1))

    def loss(self, obs: Tensor, act: Tensor, rew: Tensor, next_obs: Tensor, done: Tensor,
             weight: Tensor) -> Tensor:
        """Negative log-likelihood of a batch (B rows, weighted by ``weight`` (B,), e.g. 0 for
        held-out rows): Gaussian on the normalized change and reward, Bernoulli on done."""
        out = self._outputs(obs, act)
        z_delta = self.delta_norm.normalize(next_obs - obs)
        z_rew = self.reward_norm.normalize(rew.unsqueeze(-1))[:, 0]
        nll = (_gaussian_nll(out[DYNAMICS], z_delta, self.dynamics_log_std).mean(-1)
               + _gaussian_nll(out[REWARD, :, 0], z_rew, self.reward_log_std)
               + F.binary_cross_entropy_with_logits(out[TERMINATION, :, 0], done,
                                                    reduction="none"))
        return (nll * weight).sum() / weight.sum().clamp_min(1.0)

    @torch.no_grad()
    def one_step_error(self, obs: Tensor, act: Tensor, next_obs: Tensor) -> tuple[float, float]:
        """Mean squared error of the predicted next state, and that of predicting no change."""
        pred = self(obs, act).next_obs
        return (pred - next_obs).pow(2).mean().item(), (obs - next_obs).pow(2).mean().item()


def _gaussian_nll(mean: Tensor, target: Tensor, log_std: Tensor) -> Tensor:
    """Per-element -log N(target; mean, exp(log_std)^2) without the constant."""
    log_std = soft_clamp_log_std(log_std)
    return 0.5 * (target - mean).pow(2) * torch.exp(-2.0 * log_std) + log_std
