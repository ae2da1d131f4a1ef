"""The planning objective J(s, lambda) = E_pi[Q(s, a)] - alpha KL(pi_lambda || U(-1,1)).

J is written once (``soft_value``); its gradient w.r.t. lambda = (mu, log_std) comes from
autograd through it and through whatever differentiable value estimate it is given.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from mbiapo.models.tanh_gaussian import TanhGaussian, kl_to_uniform

QFn = Callable[[Tensor], Tensor]
"""``q(actions (B, N, A)) -> Q-hat (B, N)``: a value estimate with the states bound in."""
ValueAndGrad = Callable[[Tensor, Tensor], tuple[Tensor, tuple[Tensor, Tensor]]]


def soft_value(q: QFn, mu: Tensor, log_std: Tensor, alpha: Tensor | float,
               n_samples: int) -> Tensor:
    """J (B,) for parameters mu, log_std (B, A), from ``n_samples`` reparameterized samples
    per state; differentiable w.r.t. mu and log_std."""
    actions, _, log_prob = TanhGaussian(mu, log_std).rsample(n_samples)
    return q(actions).mean(-1) - alpha * kl_to_uniform(log_prob, mu.shape[-1])


def soft_value_and_grad(q: QFn, mu: Tensor, log_std: Tensor, alpha: Tensor | float,
                        n_samples: int) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """J (B,) and (dJ/dmu, dJ/dlog_std) (B, A) from one set of samples, all detached: the
    gradient of sum_b J by ``torch.autograd.grad`` (the rows are independent, so each row
    is its state's own gradient). Works under ``torch.no_grad`` too (acting), and leaves
    ``.grad`` of the value estimate's parameters alone."""
    with torch.enable_grad():
        mu = mu.detach().requires_grad_(True)
        log_std = log_std.detach().requires_grad_(True)
        value = soft_value(q, mu, log_std, alpha, n_samples)
        grads = torch.autograd.grad(value.sum(), (mu, log_std))
    return value.detach(), grads


def soft_value_and_grad_transform(q: QFn, mu: Tensor, log_std: Tensor, alpha: Tensor | float,
                                  n_samples: int) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``soft_value_and_grad`` by the function transform ``torch.func.grad``, which
    ``torch.compile`` traces into one graph with its backward (``autograd.grad`` would break
    the graph there); eager, the plain version is faster."""

    def total(mu: Tensor, log_std: Tensor) -> tuple[Tensor, Tensor]:
        value = soft_value(q, mu, log_std, alpha, n_samples)
        return value.sum(), value

    with torch.no_grad():  # the transform still differentiates; nothing outside records
        grads, value = torch.func.grad(total, argnums=(0, 1), has_aux=True)(mu, log_std)
    return value, grads


class SoftObjective:
    """J for a fixed batch of B states, estimated with ``n_samples`` reparameterized samples.

    ``q(actions (B, N, A)) -> (B, N)`` is the value estimate with the states bound in; it
    only has to be differentiable. ``value_and_grad``, when given, replaces
    ``soft_value_and_grad`` (the agent passes a compiled one).
    """

    def __init__(self, q: QFn, alpha: Tensor | float, act_dim: int, n_samples: int = 10,
                 value_and_grad: ValueAndGrad | None = None):
        self.q = q
        self.alpha = alpha
        self.act_dim = act_dim
        self.n_samples = n_samples
        self.given_value_and_grad = value_and_grad

    def __call__(self, mu: Tensor, log_std: Tensor) -> Tensor:
        """mu, log_std: (B, A) -> J (B,), differentiable w.r.t. both."""
        return soft_value(self.q, mu, log_std, self.alpha, self.n_samples)

    def value_and_grad(self, mu: Tensor, log_std: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """J (B,) and (dJ/dmu, dJ/dlog_std) (B, A) for one set of samples; all detached."""
        if self.given_value_and_grad is not None:
            return self.given_value_and_grad(mu, log_std)
        return soft_value_and_grad(self.q, mu, log_std, self.alpha, self.n_samples)
