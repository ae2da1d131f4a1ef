"""The planning objectives: J(s, lambda) = E_pi[Q(s, a)] - alpha KL(pi_lambda || U(-1,1)) of
one action distribution (``SoftObjective``), and the H-step score of action sequences
through a model (``SequenceObjective``), which sequence planners use beside it.

J is written once (``soft_value``); its gradient w.r.t. lambda = (mu, log_std) comes from
autograd through it and through whatever differentiable value estimate it is given.
"""

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from mbiapo.models.tanh_gaussian import TanhGaussian, kl_to_uniform
from mbiapo.models.world_model import Prediction

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


class Dynamics(Protocol):
    """A model to plan through. ``begin(obs (M, S))`` starts one rollout of M trajectories
    and returns its step function ``step(s (M, S), a (M, A)) -> Prediction`` (next state,
    reward, probability of going on; each row keeps its own model, e.g. its ensemble member,
    for the whole rollout). ``differentiable``: whether predictions carry gradients w.r.t.
    the actions (a learned model) or not (the simulator). ``sync(envs)`` is called with the
    live episodes' environments before each action: the simulator copies their states
    (rollouts from row b start in ``envs[b]``'s); a learned model ignores it."""

    differentiable: bool

    def begin(self, obs: Tensor) -> Callable[[Tensor, Tensor], Prediction]: ...

    def sync(self, envs: list) -> None: ...


PolicyFn = Callable[[Tensor], TanhGaussian]
"""``policy(obs (M, S)) -> TanhGaussian`` with (M, A) parameters."""


class SequenceObjective:
    """The H-step score of action sequences from a fixed batch of B states, through
    ``dynamics``:

        score = sum_{t<H} gamma^t c_t r_t + gamma^H c_H V(s_H),

    c_0 = 1 and c_{t+1} = c_t cont_t the probability that the episode is still going, r_t the
    model's reward (an ensemble's already lowered by its uncertainty penalty), and
    ``terminal(s (M, S)) -> (M,)`` the soft value V (None: no terminal value). A predicted
    termination's own reward counts, nothing after it does. ``prior(s)``, where given, is the
    policy whose trajectories ``propose`` draws. ``score``, when given, replaces the
    ``score`` method (the agent passes a compiled one).
    """

    def __init__(self, obs: Tensor, dynamics: Dynamics, gamma: float,
                 terminal: Callable[[Tensor], Tensor] | None = None,
                 prior: PolicyFn | None = None,
                 score: Callable[[Tensor, bool], Tensor] | None = None):
        self.obs, self.dynamics, self.gamma = obs, dynamics, gamma
        self.terminal, self.prior = terminal, prior
        self.given_score = score
        self.differentiable = dynamics.differentiable

    def score(self, actions: Tensor, terminal: bool = True) -> Tensor:
        """actions (B, N, H, A) in [-1, 1] -> scores (B, N); NaN scores become the lowest
        finite number, so they rank last. Differentiable w.r.t. the actions where the
        dynamics are; ``terminal`` False leaves V(s_H) out."""
        if self.given_score is not None:
            return self.given_score(actions, terminal)
        b, n, horizon, _ = actions.shape
        s = self.obs.repeat_interleave(n, 0)  # (B N, S), state-major
        a = actions.reshape(b * n, horizon, -1)
        step = self.dynamics.begin(s)
        total, going, discount = s.new_zeros(b * n), s.new_ones(b * n), 1.0
        for t in range(horizon):
            pred = step(s, a[:, t])
            total = total + discount * going * pred.reward
            going, s, discount = going * pred.cont, pred.next_obs, discount * self.gamma
        if terminal and self.terminal is not None:
            total = total + discount * going * self.terminal(s)
        return total.reshape(b, n).nan_to_num(nan=torch.finfo(total.dtype).min)

    def propose(self, n: int, horizon: int) -> Tensor:
        """n trajectories per state of the prior policy through the dynamics: their pre-tanh
        actions (B, n, H, A), detached."""
        if self.prior is None:
            raise ValueError("this sequence objective has no prior policy")
        with torch.no_grad():
            b = self.obs.shape[0]
            s = self.obs.repeat_interleave(n, 0)
            step, us = self.dynamics.begin(s), []
            for _ in range(horizon):
                a, u, _ = self.prior(s).rsample(1)
                us.append(u[:, 0])
                s = step(s, a[:, 0]).next_obs
            return torch.stack(us, 1).reshape(b, n, horizon, -1)


class SoftObjective:
    """J for a fixed batch of B states, estimated with ``n_samples`` reparameterized samples.

    ``q(actions (B, N, A)) -> (B, N)`` is the value estimate with the states bound in; it
    only has to be differentiable. ``value_and_grad``, when given, replaces
    ``soft_value_and_grad`` (the agent passes a compiled one). ``sequence``: the same
    states' ``SequenceObjective`` where the agent has a model to plan through, else None.
    """

    def __init__(self, q: QFn, alpha: Tensor | float, act_dim: int, n_samples: int = 10,
                 value_and_grad: ValueAndGrad | None = None,
                 sequence: SequenceObjective | None = None):
        self.q = q
        self.alpha = alpha
        self.act_dim = act_dim
        self.n_samples = n_samples
        self.given_value_and_grad = value_and_grad
        self.sequence = sequence

    def __call__(self, mu: Tensor, log_std: Tensor) -> Tensor:
        """mu, log_std: (B, A) -> J (B,), differentiable w.r.t. both."""
        return soft_value(self.q, mu, log_std, self.alpha, self.n_samples)

    def value_and_grad(self, mu: Tensor, log_std: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """J (B,) and (dJ/dmu, dJ/dlog_std) (B, A) for one set of samples; all detached."""
        if self.given_value_and_grad is not None:
            return self.given_value_and_grad(mu, log_std)
        return soft_value_and_grad(self.q, mu, log_std, self.alpha, self.n_samples)
