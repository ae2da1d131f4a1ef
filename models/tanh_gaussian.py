"""Tanh-transformed diagonal Gaussian, the action distribution every planner searches over.

``u ~ N(mu, sigma^2)``, ``a = tanh(u)``. Log-densities use the stable identity
``log(1 - tanh(u)^2) = 2 log 2 - 2 log(e^u + e^-u)`` (``logaddexp(u, -u)``).
"""

import math

import torch
from torch import Tensor
from torch.nn import functional as F

LOG_STD_MIN = -10.0
LOG_STD_MAX = 2.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG2 = math.log(2.0)


# the bounds as 0-d tensors too: a Python number in a tensor op is converted to a tensor at
# every call (~2.5 us here), and the clamp runs at every planner step
_MIN, _MAX = torch.tensor(LOG_STD_MIN), torch.tensor(LOG_STD_MAX)


def soft_clamp_log_std(x: Tensor) -> Tensor:
    """Smoothly bound log sigma to [LOG_STD_MIN, LOG_STD_MAX]; close to identity inside."""
    x = _MAX - F.softplus(_MAX - x)
    return _MIN + F.softplus(x - _MIN)


class TanhGaussian:
    """Distribution with parameters ``mu, log_std`` of shape (B, A)."""

    def __init__(self, mu: Tensor, log_std: Tensor):
        self.mu = mu
        self.log_std = log_std

    @property
    def mode(self) -> Tensor:
        """Deterministic action ``tanh(mu)``: (B, A)."""
        return torch.tanh(self.mu)

    def sample(self) -> Tensor:
        """One action per row, without its log-probability: (B, A)."""
        return torch.tanh(torch.addcmul(self.mu, self.log_std.exp(), torch.randn_like(self.mu)))

    def rsample(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """Reparameterized samples: actions (B, n, A), pre-tanh u (B, n, A), log pi(a) (B, n)."""
        mu, log_std = self.mu, self.log_std
        eps = torch.randn(mu.shape[0], n, mu.shape[1], device=mu.device, dtype=mu.dtype)
        u = torch.addcmul(mu.unsqueeze(1), log_std.exp().unsqueeze(1), eps)
        return torch.tanh(u), u, self._log_prob(u, eps)

    def log_prob_pre_tanh(self, u: Tensor) -> Tensor:
        """log pi(tanh(u)) for pre-tanh values u of shape (B, N, A) -> (B, N)."""
        return self._log_prob(u, (u - self.mu.unsqueeze(1)) * torch.exp(-self.log_std).unsqueeze(1))

    def _log_prob(self, u: Tensor, z: Tensor) -> Tensor:
        """log pi(tanh(u)) from u and its standardized z = (u - mu) / sigma, each (B, N, A).
        With log(1 - tanh(u)^2) = 2 log 2 - 2 log(e^u + e^-u), it is
        sum(2 log(e^u + e^-u) - z^2 / 2) - sum(log sigma) - A (log(2 pi) / 2 + 2 log 2)."""
        return (torch.add(torch.logaddexp(u, -u), z.square(), alpha=-0.25).sum(-1)
                .mul(2.0).sub(self.log_std.sum(-1, keepdim=True))
                .sub(self.mu.shape[1] * (_HALF_LOG_2PI + 2.0 * _LOG2)))

    def log_prob(self, a: Tensor, eps: float = 1e-6) -> Tensor:
        """log pi(a) for actions a in (-1, 1) of shape (B, N, A) -> (B, N)."""
        return self.log_prob_pre_tanh(torch.atanh(a.clamp(-1 + eps, 1 - eps)))


def kl_to_uniform(log_prob: Tensor, act_dim: int) -> Tensor:
    """Monte Carlo KL(pi || U(-1,1)^A) from samples' log pi: (B, N) -> (B,)."""
    return log_prob.mean(-1) + act_dim * _LOG2


def kl_divergence(p: TanhGaussian, q: TanhGaussian) -> Tensor:
    """KL(p || q) in closed form: (B, A) parameters -> (B,). tanh is a bijection, so this is
    the KL between the pre-tanh diagonal Gaussians."""
    var_ratio = torch.exp(2.0 * (p.log_std - q.log_std))
    mean_term = ((p.mu - q.mu) * torch.exp(-q.log_std)).pow(2)
    return 0.5 * (var_ratio + mean_term - 1.0).sum(-1) - (p.log_std - q.log_std).sum(-1)
