"""The planning objective J(s, lambda) = E_pi[Q(s, a)] - alpha KL(pi_lambda || U(-1,1))."""

import math
from collections.abc import Callable

import torch
from torch import Tensor

from mbiapo.models.tanh_gaussian import TanhGaussian, kl_to_uniform

QAndGrad = Callable[[Tensor], tuple[Tensor, Tensor]]
# per action dimension: log 2 (uniform prior) - log(2 pi) / 2 (Gaussian) - 2 log 2 (tanh)
_KL_CONST = -math.log(2.0) - 0.5 * math.log(2 * math.pi)


def soft_value_and_grad(q_and_grad: QAndGrad, mu: Tensor, log_std: Tensor, alpha: float,
                        n_samples: int, with_value: bool = True
                        ) -> tuple[Tensor | None, tuple[Tensor, Tensor]]:
    """J (B,) (None without ``with_value``: the gradient does not need the KL term's value)
    and (dJ/dmu, dJ/dlog_std) (B, A) for one set of ``n_samples`` samples per state, from
    the value estimate's ``q_and_grad``; all detached. A plain function of its arguments, so
    ``torch.compile`` can fuse it (``Agent.compile_value_gradient``)."""
    with torch.no_grad():
        # u = mu + sigma eps, a = tanh(u), log(1 - a^2) = 2 log 2 - 2 log(e^u + e^-u):
        # KL = A * _KL_CONST - sum(log sigma) + 2 E[sum(log(e^u + e^-u) - eps^2 / 4)]
        eps = torch.randn(mu.shape[0], n_samples, mu.shape[1], device=mu.device,
                          dtype=mu.dtype)
        std = log_std.exp().unsqueeze(1)
        u = torch.addcmul(mu.unsqueeze(1), std, eps)
        actions = torch.tanh(u)
        q, dq_da = q_and_grad(actions)
        # sums, scaled once, instead of means (reductions dominate at small batches)
        n = n_samples
        value = None
        if with_value:
            per_sample = torch.add(torch.logaddexp(u, -u), eps.square(), alpha=-0.25)
            value = torch.add(_sum_samples(q, -1), log_std.sum(-1), alpha=n * alpha).sub_(
                per_sample.sum((1, 2)), alpha=2.0 * alpha)
            if n > 1:
                value.mul_(1.0 / n)
            value.sub_(alpha * mu.shape[1] * _KL_CONST)
        # n dJ/du = dQ/da (1 - a^2) - 2 alpha a per sample; d log pi / d log sigma = -1
        du = torch.addcmul(dq_da, dq_da, actions.square(), value=-1.0).sub_(
            actions, alpha=2.0 * alpha)
        if n > 1:
            du.mul_(1.0 / n)
        return value, (_sum_samples(du, 1), _sum_samples(du * eps, 1).mul_(std[:, 0]).add_(alpha))


def _sum_samples(x: Tensor, dim: int) -> Tensor:
    """x summed over its sample dimension; with a single sample, a view (no kernel)."""
    return x.select(dim, 0) if x.shape[dim] == 1 else x.sum(dim)


class SoftObjective:
    """J for a fixed batch of B states, estimated with ``n_samples`` reparameterized samples.

    ``q(actions (B, N, A)) -> (B, N)`` is the value estimate with the states bound in.
    ``q_and_grad(actions) -> (Q (B, N), dQ/da (B, N, A))``, when given, lets
    ``value_and_grad`` skip autograd (both value estimators provide it; any other
    differentiable ``q`` works through autograd). ``value_and_grad(mu, log_std,
    with_value)``, when given, replaces the one built from them (the agent passes a compiled
    one).
    """

    def __init__(self, q: Callable[[Tensor], Tensor], alpha: float, act_dim: int,
                 n_samples: int = 10, q_and_grad: QAndGrad | None = None,
                 value_and_grad: Callable[[Tensor, Tensor], tuple] | None = None):
        self.q = q
        self.alpha = alpha
        self.act_dim = act_dim
        self.n_samples = n_samples
        self.q_and_grad = q_and_grad
        self.given_value_and_grad = value_and_grad

    def __call__(self, mu: Tensor, log_std: Tensor) -> Tensor:
        """mu, log_std: (B, A) -> J (B,), differentiable w.r.t. both."""
        actions, _, log_prob = TanhGaussian(mu, log_std).rsample(self.n_samples)
        return self.q(actions).mean(-1) - self.alpha * kl_to_uniform(log_prob, self.act_dim)

    def value_and_grad(self, mu: Tensor, log_std: Tensor, with_value: bool = True
                       ) -> tuple[Tensor | None, tuple[Tensor, Tensor]]:
        """J (B,) (None without ``with_value``) and (dJ/dmu, dJ/dlog_std) (B, A) for one set
        of samples; all detached."""
        if self.given_value_and_grad is not None:
            return self.given_value_and_grad(mu, log_std, with_value)
        if self.q_and_grad is not None:
            return soft_value_and_grad(self.q_and_grad, mu, log_std, self.alpha, self.n_samples,
                                       with_value)
        with torch.enable_grad():
            mu = mu.detach().requires_grad_(True)
            log_std = log_std.detach().requires_grad_(True)
            value = self(mu, log_std)
            grads = torch.autograd.grad(value.sum(), (mu, log_std))
        return value.detach() if with_value else None, grads
