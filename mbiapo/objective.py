"""The planning objective J(s, lambda) = E_pi[Q(s, a)] - alpha KL(pi_lambda || U(-1,1))."""

from collections.abc import Callable

from torch import Tensor

from mbiapo.models.tanh_gaussian import TanhGaussian, kl_to_uniform


class SoftObjective:
    """J for a fixed batch of B states, estimated with ``n_samples`` reparameterized samples.

    ``q(actions (B, N, A)) -> (B, N)`` is the value estimate with the states bound in.
    """

    def __init__(self, q: Callable[[Tensor], Tensor], alpha: float, act_dim: int,
                 n_samples: int = 10):
        self.q = q
        self.alpha = alpha
        self.act_dim = act_dim
        self.n_samples = n_samples

    def __call__(self, mu: Tensor, log_std: Tensor) -> Tensor:
        """mu, log_std: (B, A) -> J (B,), differentiable w.r.t. both."""
        actions, _, log_prob = TanhGaussian(mu, log_std).rsample(self.n_samples)
        return self.q(actions).mean(-1) - self.alpha * kl_to_uniform(log_prob, self.act_dim)
