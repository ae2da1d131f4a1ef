"""The planning objective J(s, lambda) = E_pi[Q(s, a)] - alpha KL(pi_lambda || U(-1,1))."""

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from mbiapo.models.tanh_gaussian import TanhGaussian, kl_to_uniform

QAndGrad = Callable[[Tensor], tuple[Tensor, Tensor]]
# per action dimension: log 2 (uniform prior) - log(2 pi) / 2 (Gaussian) - 2 log 2 (tanh)
_KL_CONST = -math.log(2.0) - 0.5 * math.log(2 * math.pi)


class SoftObjective:
    """J for a fixed batch of B states, estimated with ``n_samples`` reparameterized samples.

    ``q(actions (B, N, A)) -> (B, N)`` is the value estimate with the states bound in.
    ``q_and_grad(actions) -> (Q (B, N), dQ/da (B, N, A))``, when given, lets
    ``value_and_grad`` skip autograd (the model-free estimator provides it).
    """

    def __init__(self, q: Callable[[Tensor], Tensor], alpha: float, act_dim: int,
                 n_samples: int = 10, q_and_grad: QAndGrad | None = None):
        self.q = q
        self.alpha = alpha
        self.act_dim = act_dim
        self.n_samples = n_samples
        self.q_and_grad = q_and_grad

    def __call__(self, mu: Tensor, log_std: Tensor) -> Tensor:
        """mu, log_std: (B, A) -> J (B,), differentiable w.r.t. both."""
        actions, _, log_prob = TanhGaussian(mu, log_std).rsample(self.n_samples)
        return self.q(actions).mean(-1) - self.alpha * kl_to_uniform(log_prob, self.act_dim)

    def value_and_grad(self, mu: Tensor, log_std: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """J (B,) and (dJ/dmu, dJ/dlog_std) (B, A) for one set of samples; all detached."""
        if self.q_and_grad is None:
            with torch.enable_grad():
                mu = mu.detach().requires_grad_(True)
                log_std = log_std.detach().requires_grad_(True)
                value = self(mu, log_std)
                grads = torch.autograd.grad(value.sum(), (mu, log_std))
            return value.detach(), grads
        with torch.no_grad():
            # u = mu + sigma eps, a = tanh(u), log(1 - a^2) = 2 log 2 - 2 (u + softplus(-2u)):
            # KL = -E[sum(eps^2 / 2 - 2 (u + softplus(-2u)))] - sum(log sigma) + A * _KL_CONST
            alpha = self.alpha
            eps = torch.randn(mu.shape[0], self.n_samples, self.act_dim, device=mu.device,
                              dtype=mu.dtype)
            std = log_std.exp().unsqueeze(1)
            u = torch.addcmul(mu.unsqueeze(1), std, eps)
            actions = torch.tanh(u)
            q, dq_da = self.q_and_grad(actions)
            per_sample = (eps.square().mul_(0.5) - 2.0 * F.softplus(-2.0 * u).add_(u)).sum(-1)
            kl = self.act_dim * _KL_CONST - log_std.sum(-1) - per_sample.mean(-1)
            value = q.mean(-1).sub_(kl, alpha=alpha)
            # dJ/du = mean over samples of dQ/da (1 - a^2) - 2 alpha a; d log pi / d log sigma
            # = -1 directly
            du = (1.0 - actions.square()).mul_(dq_da).sub_(actions, alpha=2.0 * alpha)
            return value, (du.mean(1), (du * eps).mean(1).mul_(std[:, 0]).add_(alpha))
