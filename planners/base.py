"""The planner contract.

A planner receives an ``Objective`` for a batch of B states and returns the distribution
parameters it found plus a trace. It knows nothing about environments, replay buffers or
checkpoints. Gradient-based planners differentiate the objective w.r.t. lambda only.

Training: called with gradients enabled, a trainable planner also returns
``Plan.surrogate``, a scalar whose gradient w.r.t. the planner's parameters equals that of
``mean_k mean_b J(lambda_k)``. It is ``mean <dJ/dlambda_k, lambda_k>`` (``surrogate``) with
the gradients detached, taken from the evaluations that also feed the next iteration, so
autograd backpropagates through the planner network only, never through the value estimate
a second time. ``Plan.values`` are always detached.

``train_rows`` = n: only the first n states are trained on and scored; the others are only
planned (no J after the last iteration, no share of the surrogate). The agent uses it to
plan the critic target's next states in the same batch as the states it trains on.
Planners that are not trained ignore it.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Protocol

import torch
from omegaconf import MISSING
from torch import Tensor

from mbiapo.bounds import setting
from mbiapo.models.mlp import ACTIVATIONS


class Objective(Protocol):
    """J(s, lambda) for a fixed batch of B states.

    ``__call__(mu (B, A), log_std (B, A)) -> J (B,)``, differentiable w.r.t. mu and log_std.
    ``value_and_grad(mu, log_std) -> (J (B,), (dJ/dmu, dJ/dlog_std))``, detached, from one
    set of samples, whether or not gradients are enabled around the call.
    ``mbiapo.objective.SoftObjective`` implements all three.
    ``q(actions (B, N, A)) -> (B, N)`` scores actions (used by gradient-free planners).
    Planners called with ``train_rows`` = n need all three for the first n states too
    (parameters or actions with n rows); the agent's objectives allow that.
    ``sequence``: where the agent has a model to plan through, the same states'
    ``SequenceObjective`` (``score(actions (B, N, H, A)) -> (B, N)``, ``propose(n, H)``,
    ``differentiable``, ``prior``); else None. Sequence planners need it.
    """

    alpha: float
    act_dim: int
    sequence: object | None

    def __call__(self, mu: Tensor, log_std: Tensor) -> Tensor: ...

    def value_and_grad(self, mu: Tensor, log_std: Tensor
                       ) -> tuple[Tensor, tuple[Tensor, Tensor]]: ...

    def q(self, actions: Tensor) -> Tensor: ...


@dataclass
class Plan:
    """Result of planning for B states.

    mu, log_std: (B, A). With ``record``, ``values[k]`` is J (B,) after iteration k+1 (of
    the first ``train_rows`` states only, when given) and ``seconds[k]`` the wall-clock since
    the start of planning at that point. Without ``record``, they hold at most the final J:
    trained planners evaluate it anyway when training (its gradient is part of the
    surrogate); otherwise they are empty.
    Sequence planners also give, with ``record``, ``scores[k]``: the H-step score (B,) of
    the mean action sequence after iteration k+1; and always ``sequence``, that final mean
    sequence (B, H, A, pre-tanh), and ``next_init``: what to pass as ``init`` to plan the
    next step of the same episodes (their plan shifted by one step). Both None for planners
    that plan one action and carry nothing from one step to the next.
    """

    mu: Tensor
    log_std: Tensor
    values: list[Tensor] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    surrogate: Tensor | None = None
    scores: list[Tensor] = field(default_factory=list)
    sequence: Tensor | None = None
    next_init: tuple[Tensor, Tensor] | None = None

    def trace(self) -> Tensor:
        """J after each iteration: (K, B)."""
        return torch.stack(self.values)


Callback = Callable[[int, Tensor, Tensor], None]
"""``callback(k, mu (B, A), log_std (B, A))`` after iteration k+1, with detached parameters
that the planner may later change in place (clone what you keep)."""


@dataclass
class PlannerConfig:
    """The ``planner`` config group: settings every planner has. A registered planner's
    config subclasses it; the planner is built as ``cls(obs_dim, act_dim, **settings)`` with
    every field except the agent's own (``AGENT_FIELDS``: which planner, and how many action
    samples estimate J when acting and in updates)."""

    name: str = MISSING  # a registered planner (default: configs/default.yaml)
    iters: int = setting(5, ge=1)  # iterations per action
    samples: int = setting(10, ge=1)  # action samples per J estimate when acting
    train_samples: int = setting(1, ge=1)  # action samples per J estimate in updates

    @staticmethod
    def check(cfg) -> str | None:
        """What is wrong with these settings beyond their types and each field's declared
        values (``mbiapo.bounds.setting``), as one line; or None."""
        return None


AGENT_FIELDS = ("name", "samples", "train_samples")


def planner_settings(cfg) -> dict:
    """The constructor keywords of a planner config (a dataclass or a DictConfig)."""
    return {k: getattr(cfg, k) for k in _field_names(cfg) if k not in AGENT_FIELDS}


def _field_names(cfg) -> list[str]:
    try:
        return [f.name for f in fields(cfg)]
    except TypeError:  # a DictConfig
        return list(cfg.keys())


@dataclass
class NetworkPlannerConfig(PlannerConfig):
    """Trained planners: their network (direct: the policy MLP; iterative: the amortizer's
    trunk)."""

    hidden: int = setting(256, ge=1)
    layers: int = setting(2, ge=1)
    activation: str = setting("relu", choices=ACTIVATIONS)
    layer_norm: bool = False


class Planner(Protocol):
    """``plan(objective, obs (B, S), iters, init=(mu, log_std) or None, record, callback,
    train_rows) -> Plan``. ``callback`` lets analyses follow the search (paths, timings)
    without the planner evaluating J for them."""

    trainable: bool
    iters: int

    def plan(self, objective: Objective, obs: Tensor, iters: int | None = None,
             init: tuple[Tensor, Tensor] | None = None, record: bool = True,
             callback: Callback | None = None, train_rows: int | None = None) -> Plan: ...


def initial_params(obs: Tensor, act_dim: int,
                   init: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
    """The common start mu = 0, sigma = 1 (or a given ``init``), each (B, A)."""
    if init is not None:
        return init[0].detach().clone(), init[1].detach().clone()
    zeros = obs.new_zeros(obs.shape[0], act_dim)
    return zeros, zeros.clone()


Pairs = list[tuple[Tensor, Tensor]]


def surrogate(grads: Pairs, lambdas: Pairs) -> Tensor:
    """``mean_k mean_b <dJ/dlambda_k, lambda_k>`` over K iterations' detached
    (dJ/dmu, dJ/dlog_std) and differentiable (mu, log_std) pairs, each (n, A): its gradient
    w.r.t. whatever made the lambdas is that of ``mean_k mean_b J(lambda_k)``."""
    total = sum((g_mu * mu).sum() + (g_log_std * log_std).sum()
                for (g_mu, g_log_std), (mu, log_std) in zip(grads, lambdas))
    return total / (len(grads) * grads[0][0].shape[0])


class Clock:
    """Wall-clock since construction; synchronizes CUDA so GPU timings are honest."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.start = time.perf_counter()

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - self.start
