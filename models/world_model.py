"""Learned environment model: residual Gaussian dynamics, Gaussian reward, termination.

Three separate MLPs (paper Table 8: 2x256, LayerNorm, LeakyReLU) run as one stacked
computation, like the Q ensemble. Inputs are normalized with running statistics; the
dynamics network predicts the normalized change ``(s' - s - m_delta) / sd_delta`` and the
reward network the normalized reward, each with a learned per-dimension log-std.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mbiapo.models.mlp import stacked_linear
from mbiapo.models.normalizer import RunningNormalizer
from mbiapo.models.tanh_gaussian import soft_clamp_log_std

DYNAMICS, REWARD, TERMINATION = range(3)


class Prediction(NamedTuple):
    """Mean next state (..., S), mean reward (...), probability the episode goes on (...)."""

    next_obs: Tensor
    reward: Tensor
    cont: Tensor


class WorldModel(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.obs_dim = obs_dim
        self.obs_norm = RunningNormalizer(obs_dim)
        self.delta_norm = RunningNormalizer(obs_dim)
        self.reward_norm = RunningNormalizer(1)
        # the three networks share one stacked layout; the output layer is obs_dim wide for
        # all of them, and reward and termination read its first column
        dims = [obs_dim + act_dim] + [hidden] * layers + [obs_dim]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            w, b = stacked_linear(3, fan_in, fan_out)
            self.weights.append(w)
            self.biases.append(b)
        self.norm_weight = nn.Parameter(torch.ones(layers, 3, 1, hidden))
        self.norm_bias = nn.Parameter(torch.zeros(layers, 3, 1, hidden))
        self.dynamics_log_std = nn.Parameter(torch.zeros(obs_dim))
        self.reward_log_std = nn.Parameter(torch.zeros(()))

    def _outputs(self, obs: Tensor, act: Tensor, saved: list | None = None) -> Tensor:
        """(..., S), (..., A) -> (3, M, S) raw outputs of the three networks, M = prod(...).
        Given a list ``saved``, appends what ``forward_vjp`` needs of each hidden layer."""
        x = torch.cat([self.obs_norm.normalize(obs), act], dim=-1)
        x = x.reshape(1, -1, x.shape[-1]).expand(3, -1, -1)
        *hidden, last = range(len(self.weights))
        for i in hidden:
            pre = torch.baddbmm(self.biases[i], x, self.weights[i])
            normed, mean, rstd = torch.native_layer_norm(pre, pre.shape[-1:], None, None, 1e-5)
            z = torch.addcmul(self.norm_bias[i], normed, self.norm_weight[i])
            x = F.leaky_relu(z)
            if saved is not None:
                saved.append((pre, mean, rstd, z))
        return torch.baddbmm(self.biases[last], x, self.weights[last])

    def _prediction(self, obs: Tensor, out: Tensor) -> Prediction:
        """Means from the raw outputs (3, M, S) for obs (..., S)."""
        lead = obs.shape[:-1]
        next_obs = obs + self.delta_norm.denormalize(out[DYNAMICS].reshape(*lead, -1))
        reward = self.reward_norm.denormalize(out[REWARD, :, :1]).reshape(lead)
        cont = torch.sigmoid(-out[TERMINATION, :, 0]).reshape(lead)
        return Prediction(next_obs, reward, cont)

    def forward(self, obs: Tensor, act: Tensor) -> Prediction:
        """Mean predictions for obs (..., S), act (..., A); differentiable w.r.t. both."""
        return self._prediction(obs, self._outputs(obs, act))

    @torch.no_grad()
    def forward_vjp(self, obs: Tensor, act: Tensor) -> tuple[Prediction, Callable]:
        """``forward`` for obs (M, S), act (M, A) plus its hand-written vector-Jacobian
        product ``vjp(grad_next_obs (M, S), grad_reward (M,), grad_cont (M,)) -> (grad_obs
        (M, S), grad_act (M, A))``. No autograd graph is built (see ``QEnsemble.forward_vjp``)."""
        saved = []
        out = self._outputs(obs, act, saved)
        pred = self._prediction(obs, out)

        def vjp(grad_next_obs: Tensor, grad_reward: Tensor,
                grad_cont: Tensor) -> tuple[Tensor, Tensor]:
            grad_out = torch.zeros_like(out)
            grad_out[DYNAMICS] = grad_next_obs * self.delta_norm.std
            grad_out[REWARD, :, 0] = grad_reward * self.reward_norm.std
            grad_out[TERMINATION, :, 0] = grad_cont * pred.cont * (pred.cont - 1.0)
            g = torch.bmm(grad_out, self.weights[-1].transpose(1, 2))
            for i in reversed(range(len(saved))):
                pre, mean, rstd, z = saved[i]
                g = torch.ops.aten.leaky_relu_backward(g, z, 0.01, False) * self.norm_weight[i]
                g = torch.ops.aten.native_layer_norm_backward(
                    g, pre, pre.shape[-1:], mean, rstd, None, None, [True, False, False])[0]
                g = torch.bmm(g, self.weights[i].transpose(1, 2))
            g = g.sum(0)
            return grad_next_obs + g[:, : self.obs_dim] / self.obs_norm.std, g[:, self.obs_dim:]

        return pred, vjp

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
