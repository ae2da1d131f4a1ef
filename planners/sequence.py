"""Sequence planners: model-predictive control through the agent's model.

They search an H-step action sequence, scored by the objective's ``SequenceObjective``
(``sum_t gamma^t c_t r_t + gamma^H c_H V(s_H)`` through a world model or the simulator),
and return the first action's tanh-Gaussian like every planner. Searches run in pre-tanh
space (actions stay in bounds) for all B states at once; each start is ``init`` (the
previous step's plan shifted by one step: ``Plan.next_init``) or, without it, mean 0 and
std ``init_std`` (a new episode). With ``prior_samples`` P > 0, P trajectories of the
objective's prior policy (the agent's trained planner) join the candidates of every
iteration (TD-MPC2's policy prior). ``SamplingSequencePlanner`` holds what MPPI and CEM
share; they differ in how they sample and refit.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mbiapo.bounds import setting
from mbiapo.errors import MbiapoError
from mbiapo.planners.base import Callback, Clock, Objective, Plan, PlannerConfig


@dataclass
class SequenceConfig(PlannerConfig):
    """Settings every sequence planner has (TD-MPC2's MPPI: 6 iterations, H = 3, 512
    samples, 24 from the policy prior, std in [0.05, 2])."""

    iters: int = 6
    horizon: int = setting(5, ge=1)  # H: actions per sequence
    population: int = setting(512, ge=1)  # sequences scored per iteration, prior ones included
    prior_samples: int = setting(24, ge=0)  # trajectories of the agent's trained planner among them
    # pre-tanh std of a new search (and of each step's last action)
    init_std: float = setting(2.0, gt=0)
    min_std: float = setting(0.05, gt=0)  # floor of the refitted std
    terminal_value: bool = True  # add gamma^H c_H V(s_H) to every score

    @staticmethod
    def check(cfg) -> str | None:
        if cfg.prior_samples >= cfg.population:
            return (f"planner.prior_samples must lie in [0, planner.population), got "
                    f"{cfg.prior_samples} and {cfg.population}")
        if cfg.min_std > cfg.init_std:
            return (f"planner.min_std and planner.init_std need 0 < min_std <= init_std, got "
                    f"{cfg.min_std} and {cfg.init_std}")
        return None


NO_MODEL = ("sequence planners plan through a model, and this agent has none: use a "
            "model-based checkpoint, --model-based or --true-model")


def sequence_objective(objective: Objective):
    """The objective's ``SequenceObjective``, or one error line saying what is missing."""
    sequence = getattr(objective, "sequence", None)
    if sequence is None:
        raise MbiapoError(NO_MODEL)
    return sequence


class SequencePlanner:
    """What every sequence planner shares: the start, the prior's proposals and the plan it
    returns. ``search(sequence, mu, log_std, prior, iters, step)`` is the search proper:
    from (B, H, A) means and log-stds, it returns the final ones, calling ``step(k, mu,
    log_std)`` after each iteration."""

    trainable = False

    def __init__(self, act_dim: int, iters: int, horizon: int, prior_samples: int,
                 init_std: float, min_std: float, terminal_value: bool):
        self.act_dim, self.iters, self.horizon = act_dim, iters, horizon
        self.prior_samples, self.terminal_value = prior_samples, terminal_value
        self.log_init_std, self.log_min_std = math.log(init_std), math.log(min_std)

    def start(self, obs: Tensor, init: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
        """(B, H, A) means and log-stds: ``init`` as given (a sequence), a single action's
        ``init`` (B, A) for the first step, or mean 0 and std ``init_std``."""
        b, h, a = obs.shape[0], self.horizon, self.act_dim
        mu = obs.new_zeros(b, h, a)
        log_std = obs.new_full((b, h, a), self.log_init_std)
        if init is None:
            return mu, log_std
        if init[0].dim() == 2:
            mu[:, 0], log_std[:, 0] = init[0], init[1]
            return mu, log_std
        if init[0].shape != mu.shape:
            raise ValueError(f"init sequences have shape {tuple(init[0].shape)}, this planner "
                             f"plans {tuple(mu.shape)} (B, horizon, actions)")
        return init[0].detach().clone(), init[1].detach().clone()

    def shifted(self, mu: Tensor) -> tuple[Tensor, Tensor]:
        """The warm start of the next step: the means one step on, a zero mean last, and
        every std back to ``init_std``: (B, H, A) each."""
        return (torch.cat([mu[:, 1:], torch.zeros_like(mu[:, :1])], 1),
                torch.full_like(mu, self.log_init_std))

    def search(self, sequence, mu: Tensor, log_std: Tensor, prior: Tensor | None, iters: int,
               step) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def plan(self, objective: Objective, obs: Tensor, iters: int | None = None,
             init: tuple[Tensor, Tensor] | None = None, record: bool = True,
             callback: Callback | None = None, train_rows: int | None = None) -> Plan:
        """Not trained: ``train_rows`` is ignored. ``values`` score the first action's
        distribution by the agent's J; ``scores`` the mean sequence by the H-step score."""
        sequence = sequence_objective(objective)
        iters = self.iters if iters is None else iters
        clock = Clock(obs.device)
        mu, log_std = self.start(obs, init)
        prior = sequence.propose(self.prior_samples, self.horizon) if self.prior_samples \
            else None
        plan = Plan(mu[:, 0], log_std[:, 0])

        def step(k: int, mu: Tensor, log_std: Tensor) -> None:
            if callback is not None:
                callback(k, mu[:, 0], log_std[:, 0])
            if record:
                with torch.no_grad():
                    plan.values.append(objective(mu[:, 0], log_std[:, 0]))
                    plan.scores.append(sequence.score(torch.tanh(mu).unsqueeze(1),
                                                      self.terminal_value)[:, 0])
                plan.seconds.append(clock())

        mu, log_std = self.search(sequence, mu, log_std, prior, iters, step)
        plan.mu, plan.log_std, plan.sequence = mu[:, 0], log_std[:, 0], mu
        plan.next_init = self.shifted(mu)
        return plan


def check_model(planner, has_model: bool) -> None:
    """One error line, before any work is done, where a sequence planner would have no
    model to plan through."""
    if isinstance(planner, SequencePlanner) and not has_model:
        raise MbiapoError(NO_MODEL)


class SamplingSequencePlanner(SequencePlanner):
    """Each iteration: ``sample_count(k)`` Gaussian sequences around the current plan (B, N,
    H, A), plus the P prior ones and whatever the last refit kept, are scored; then
    ``refit(u, score, mu, log_std) -> (mu, log_std, kept)``, with the std floored at
    ``min_std`` and capped at ``init_std``; ``kept`` (B, k, H, A) or None are sequences to
    score again in the next iteration."""

    def __init__(self, act_dim: int, iters: int, horizon: int, population: int,
                 prior_samples: int, init_std: float, min_std: float, terminal_value: bool):
        super().__init__(act_dim, iters, horizon, prior_samples, init_std, min_std,
                         terminal_value)
        self.population = population

    def noise(self, shape: tuple[int, ...], like: Tensor, k: int) -> Tensor:
        """Standard normal noise (B, N, H, A) for iteration k."""
        return torch.randn(shape, device=like.device, dtype=like.dtype)

    def refit(self, u: Tensor, score: Tensor, mu: Tensor, log_std: Tensor
              ) -> tuple[Tensor, Tensor, Tensor | None]:
        raise NotImplementedError

    def sample_count(self, k: int) -> int:
        return self.population - self.prior_samples

    @torch.no_grad()
    def search(self, sequence, mu: Tensor, log_std: Tensor, prior: Tensor | None, iters: int,
               step) -> tuple[Tensor, Tensor]:
        b, kept = mu.shape[0], None
        for k in range(iters):
            eps = self.noise((b, self.sample_count(k), self.horizon, self.act_dim), mu, k)
            u = mu.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps
            u = torch.cat([x for x in (prior, kept, u) if x is not None], 1)
            score = sequence.score(torch.tanh(u), self.terminal_value)
            mu, log_std, kept = self.refit(u, score, mu, log_std)
            log_std = log_std.clamp(self.log_min_std, self.log_init_std)
            step(k, mu, log_std)
        return mu, log_std


def top(u: Tensor, score: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k best of N sequences u (B, N, H, A) by score (B, N): (B, k, H, A), (B, k)."""
    best, index = score.topk(k, dim=1)
    return u.gather(1, index[:, :, None, None].expand(-1, -1, *u.shape[2:])), best
