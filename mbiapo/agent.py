"""The agent: a planner acting on a value estimate, trained with the SAC setup.

The whole learning step is ``Agent.update``: (1) planning with the current parameters,
(2) critic regression of the pessimistic Q ensemble to soft targets, (3) planner training
on -J (direct and iterative planners only) and temperature tuning towards the target
entropy, (4) the value estimator's own learning step (``ValueEstimator.update``: for
model-based estimates, the world-model ensemble and the distilled rollout policy), (5)
Polyak averaging. Every loss of a step is computed with the parameters the step starts from
(the paper's implementation computes all losses, then applies all updates).

Critic targets bootstrap with the next actions the estimator proposes
(``ValueEstimator.next_policy``: the model-based one's rollout policy, since running the
planner on a model-based objective for every target would multiply the update's cost) or,
where it proposes none, the acting planner's, planned in the same call as the batch.
"""

import copy
import math
from contextlib import contextmanager

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from mbiapo.config import planner_group
from mbiapo.errors import MbiapoError
from mbiapo.models.q_ensemble import pessimistic
from mbiapo.models.tanh_gaussian import TanhGaussian
from mbiapo.objective import SequenceObjective, SoftObjective, soft_value_and_grad_transform
from mbiapo.planners import PLANNERS, Plan, Planner, planner_settings, sequence_planners
from mbiapo.value import Q_NETWORKS, VALUES, as_estimator

SMALL_BATCH = 16
"""Acting on at most this many states runs on one intra-op thread (see ``Agent.act``)."""


def build_planner(cfg: DictConfig, obs_dim: int, act_dim: int) -> Planner:
    """The registered planner ``cfg.name`` built from its settings; one line where it lacks
    what the contract asks of every planner (``trainable``, ``iters``, ``plan``)."""
    planner = PLANNERS.get(cfg.name).build(obs_dim, act_dim, **planner_settings(cfg))
    missing = [name for name in ("trainable", "iters", "plan") if not hasattr(planner, name)]
    if missing:
        raise MbiapoError(f"planner '{cfg.name}' has no {', '.join(missing)}: every planner "
                          f"states whether it is trainable, its iterations per action and "
                          f"plan(...) (docs/planners.md, 'The contract')")
    return planner


def resolve_device(name: str | torch.device) -> torch.device:
    """``torch.device(name)``, or one MbiapoError line for a name torch does not know or a
    device this machine lacks."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise MbiapoError(f"unknown device '{name}'; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MbiapoError(f"device '{name}' asked for, but torch sees no CUDA device here; "
                          f"use --device cpu (train.device=cpu)")
    return device


def _adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one call for all parameters)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


@contextmanager
def _threads(rows: int):
    """One intra-op thread for small batches: at batch 1 the ops are too small to split,
    and a second thread only waits (5x slower with another busy process on 2 cores)."""
    before = torch.get_num_threads()
    if rows > SMALL_BATCH or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Agent(nn.Module):
    """A planner, a pessimistic Q ensemble and a value estimator (``estimator``: what it
    learns beyond the Q ensemble, e.g. a world model); ``value`` is what planners plan
    against (``ValueEstimate``: any differentiable callable may replace it), ``dynamics``
    what sequence planners plan through (the estimator's model, None without one; the
    simulator with ``mbiapo.true_model``)."""

    def __init__(self, cfg: DictConfig, obs_dim: int, act_dim: int):
        super().__init__()
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = resolve_device(cfg.train.device)
        v, t = cfg.value, cfg.train
        self.q = Q_NETWORKS.get(v.q_network).build(obs_dim, act_dim, v)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        if cfg.planner.name in sequence_planners():
            raise MbiapoError(f"'{cfg.planner.name}' plans through a model and learns nothing: "
                              f"train a direct or iterative planner and act with it, e.g. "
                              f"train --value model-based --planner iterative --act-planner "
                              f"{cfg.planner.name}")
        self.planner = build_planner(cfg.planner, obs_dim, act_dim)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(t.init_alpha)))
        self.target_entropy = -float(act_dim) if t.target_entropy is None else t.target_entropy
        # hot-path settings as plain numbers (reading a DictConfig costs ~10 us per access)
        self.beta_train, self.beta_collect = float(v.beta_train), float(v.beta_collect)
        self.samples, self.train_samples = cfg.planner.samples, cfg.planner.train_samples
        self.gamma, self.tau = float(t.gamma), float(t.tau)
        self.compiled_value_and_grad = None  # see compile_value_gradient
        self.compiled_score = None
        self.estimator = as_estimator(VALUES.get(v.kind).build(self), self)
        self.value, self.target_value = self.estimator.estimate, self.estimator.target
        self.dynamics = self.estimator.dynamics()
        self._acting = self._act_planner(t.act_planner, list(t.act_overrides))
        self.to(self.device)
        self.q_opt = _adam(self.q.parameters(), t.lr)
        # the planner and the temperature step together: one optimizer, two groups
        groups = [{"params": [self.log_alpha]}]
        if self.planner.trainable:
            groups.append({"params": list(self.planner.parameters())})
        self.policy_opt = _adam(groups, t.lr)
        self.estimator.setup_optimizers(t.lr)
        clash = {"q", "policy"} & set(self.estimator.optimizers())
        if clash:
            raise MbiapoError(f"value estimator '{v.kind}' names an optimizer "
                              f"{', '.join(sorted(clash))}, which the agent's own use")

    def _act_planner(self, name: str | None, overrides: list[str]) -> Planner | None:
        """The planner ``train.act_planner`` names, or None for the trained one."""
        if name is None:
            return None
        if name in sequence_planners() and self.dynamics is None:
            raise MbiapoError(f"train.act_planner={name} plans through a model, and value "
                              f"'{self.cfg.value.kind}' has none: use --value model-based")
        planner = self.planner_named(name, overrides)
        return None if planner is self.planner else planner

    @property
    def act_planner(self) -> Planner:
        """The planner ``act`` uses by default: ``train.act_planner``, else the trained one."""
        return self.planner if self._acting is None else self._acting

    # ----------------------------------------------------------------------------- planning
    @property
    def alpha(self) -> float:
        return self.log_alpha.detach().exp().item()

    def objective(self, obs: Tensor, beta: float, samples: int) -> SoftObjective:
        """J(s, .) for the states obs (B, S) under the agent's value estimate; planners take
        its gradient by autograd (compiled after ``compile_value_gradient``)."""
        value = self.value
        given = None
        if self.compiled_value_and_grad is not None:
            compiled, alpha = self.compiled_value_and_grad, self.log_alpha.detach().exp()
            given = lambda mu, log_std: compiled(obs, mu, log_std, alpha, beta,  # noqa: E731
                                                 samples)
        return SoftObjective(lambda actions: value(obs, actions, beta), self.alpha, self.act_dim,
                             samples, given, self._sequence_objective(obs, beta, samples))

    def _sequence_objective(self, obs: Tensor, beta: float, samples: int
                            ) -> SequenceObjective | None:
        """The H-step score through ``dynamics`` from obs (B, S): V(s_H) = Q(s_H, a') -
        alpha log pi(a'|s_H) with the pessimistic Q ensemble, a' from the estimator's next
        policy (the distilled rollout policy) or else the agent's planner; trajectories
        proposed by the agent's planner, planning on its own objective at every state with
        ``train_samples`` samples per J (as in training: the prior's many states would cost
        ``samples`` model rollouts each)."""
        if self.dynamics is None:
            return None
        given = None
        if self.compiled_score is not None and self.dynamics.differentiable:
            compiled, alpha = self.compiled_score, self.log_alpha.detach().exp()
            given = lambda actions, terminal: compiled(obs, actions, alpha, beta,  # noqa: E731
                                                       samples, terminal)
        return self._sequence(obs, self.log_alpha.detach().exp(), beta, samples, given)

    def _sequence(self, obs: Tensor, alpha: Tensor, beta: float, samples: int,
                  given=None) -> SequenceObjective:
        """``_sequence_objective`` with alpha a tensor (what the compiled score takes)."""

        def prior(states: Tensor) -> TanhGaussian:
            plan = self.planner.plan(self.objective(states, beta, self.train_samples),
                                     states, record=False)
            return TanhGaussian(plan.mu, plan.log_std)

        def terminal(states: Tensor) -> Tensor:
            with torch.no_grad():
                dist = self.estimator.next_policy(states) or prior(states)
                actions, _, log_pi = dist.rsample(1)
            return pessimistic(self.q(states.unsqueeze(1), actions), beta)[:, 0] \
                - alpha * log_pi[:, 0]

        return SequenceObjective(obs, self.dynamics, self.gamma, terminal, prior, given)

    def compile_value_gradient(self) -> None:
        """Plan with a ``torch.compile``d J and gradient (``soft_value_and_grad_transform``,
        value estimate included), in updates and when acting: fused kernels save per-op overhead,
        most at batch 1 and for model-based estimates. Each new batch size compiles once:
        ~10 s (model-free) to ~20 s (model-based), less from inductor's on-disk cache. Needs
        a C++ compiler on the CPU. Compiles the current ``value``: call it again after
        replacing that. Where ``dynamics`` is differentiable (a learned model), the H-step
        score that sequence planners use is compiled too (rollout and terminal value in one
        graph)."""
        value = self.value
        self.compiled_value_and_grad = torch.compile(
            lambda obs, mu, log_std, alpha, beta, samples: soft_value_and_grad_transform(
                lambda actions: value(obs, actions, beta), mu, log_std, alpha, samples))
        self.compiled_score = None
        if self.dynamics is not None and self.dynamics.differentiable:
            self.compiled_score = torch.compile(
                lambda obs, actions, alpha, beta, samples, terminal: self._sequence(
                    obs, alpha, beta, samples).score(actions, terminal))

    def planner_named(self, name: str | None, overrides: list[str] = ()) -> Planner:
        """The trained planner (``name`` None or its own), or another one built from its
        config group with ``planner.key=value`` ``overrides``. A trained planner's settings
        come from the checkpoint (its iterations change per call: ``plan(iters=...)``)."""
        own = name is None or name == self.cfg.planner.name
        if own and not overrides:
            return self.planner
        name = self.cfg.planner.name if own else name
        if PLANNERS.get(name).build.trainable:
            if own:
                raise MbiapoError(f"the trained {name} planner's settings come from its "
                                  f"checkpoint; planner overrides apply to untrained planners "
                                  f"(use --iters for its iterations)")
            untrained = [n for n in PLANNERS.names() if not PLANNERS.get(n).build.trainable]
            raise MbiapoError(f"this checkpoint trained a '{self.cfg.planner.name}' planner, "
                              f"so it has no trained '{name}' planner; use one of: "
                              f"{', '.join([self.cfg.planner.name, *untrained])}")
        return build_planner(planner_group(name, self.cfg.planner, overrides), self.obs_dim,
                             self.act_dim)

    def act(self, obs: np.ndarray, deterministic: bool = False, planner: Planner | None = None,
            iters: int | None = None) -> np.ndarray:
        """obs (S,) or (B, S) -> actions in [-1, 1] of shape (A,) or (B, A); see
        ``act_planned``."""
        return self.act_planned(obs, deterministic, planner, iters)[0]

    def act_planned(self, obs: np.ndarray, deterministic: bool = False,
                    planner: Planner | None = None, iters: int | None = None,
                    init: tuple[Tensor, Tensor] | None = None) -> tuple[np.ndarray, Plan]:
        """obs (S,) or (B, S) -> actions in [-1, 1] of shape (A,) or (B, A), and the plan, whose
        ``next_init`` warm-starts the next step of the same episodes (``init``). ``planner``
        defaults to ``act_planner`` (``train.act_planner``, else the trained one). Planning runs
        under ``no_grad`` (the objective enables gradients locally for dJ/dlambda), on one
        thread for small batches."""
        o = torch.as_tensor(obs, dtype=self.log_alpha.dtype, device=self.device)
        batch = o.reshape(-1, self.obs_dim)
        with torch.no_grad(), _threads(batch.shape[0]):
            objective = self.objective(batch, self.beta_collect, self.samples)
            plan = (planner or self.act_planner).plan(objective, batch, iters, init,
                                                      record=False)
            dist = TanhGaussian(plan.mu, plan.log_std)
            action = dist.mode if deterministic else dist.sample()
            return action.reshape(*o.shape[:-1], self.act_dim).cpu().numpy(), plan

    # ----------------------------------------------------------------------------- learning
    @torch.no_grad()
    def critic_target(self, batch: dict[str, Tensor],
                      next_dist: TanhGaussian | None = None) -> Tensor:
        """y = r + gamma (1 - done) (Q_targ(s', a') - alpha log pi(a'|s')) with beta_train: (B,).
        a' ~ ``next_dist``, by default the estimator's next-action distributions at s' or,
        where it proposes none, the acting planner's (planned here)."""
        beta, next_obs = self.beta_train, batch["next_obs"]
        if next_dist is None:
            next_dist = self.estimator.next_policy(next_obs)
        if next_dist is None:
            objective = self.objective(next_obs, beta, self.train_samples)
            plan = self.planner.plan(objective, next_obs, record=False)
            next_dist = TanhGaussian(plan.mu, plan.log_std)
        next_act, _, next_logp = next_dist.rsample(1)
        soft_v = self.target_value(next_obs, next_act, beta) - self.alpha * next_logp
        return batch["rew"] + self.gamma * (1 - batch["done"]) * soft_v[:, 0]

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step on a replay batch (obs, act, rew, next_obs, done, model_weight);
        returns metrics: the agent's losses and whatever the estimator's update returns."""
        beta, samples, obs = self.beta_train, self.train_samples, batch["obs"]
        b = obs.shape[0]

        # 1. plan with the current parameters (every loss of the step uses them, as in the
        #    paper's implementation): the batch's states train the planner; where the
        #    estimator proposes no next actions, the critic target's next states are planned
        #    in the same call (one batch of 2B)
        next_dist = self.estimator.next_policy(batch["next_obs"])
        states = obs if next_dist is not None else torch.cat([obs, batch["next_obs"]])
        # (trained planners give the final J without recording every iteration's)
        plan = self.planner.plan(self.objective(states, beta, samples), states,
                                 record=not self.planner.trainable, train_rows=b)
        self._require_surrogate(plan)
        planned = TanhGaussian(plan.mu[:b].detach(), plan.log_std[:b].detach())
        if next_dist is None:
            next_dist = TanhGaussian(plan.mu[b:].detach(), plan.log_std[b:].detach())

        # 2. critic regression to the soft target, 0.5 sum_i mean_b (Q_i - y)^2
        target = self.critic_target(batch, next_dist)
        q_loss = 0.5 * (self.q(obs, batch["act"]) - target).square().mean(1).sum()

        # 3. planner: ascend mean_k J(lambda_k) through the surrogate, which backpropagates
        #    through the planner only; temperature: keep the planned distributions' entropy
        #    near the target. One backward pass for all three losses (they share no
        #    parameters).
        with torch.no_grad():
            _, _, logp = planned.rsample(1)
        loss = q_loss - (self.log_alpha * (logp + self.target_entropy)).mean()
        if plan.surrogate is not None:
            loss = loss - plan.surrogate
        self.q_opt.zero_grad()
        self.policy_opt.zero_grad()
        loss.backward()
        self.q_opt.step()
        self.policy_opt.step()

        # 4. the value estimator's own learning (a world model, a rollout policy...)
        metrics = self.estimator.update(batch, planned)

        # 5. targets
        with torch.no_grad():
            torch._foreach_lerp_(list(self.q_target.parameters()), list(self.q.parameters()),
                                 self.tau)
        objective = {"objective": plan.values[-1].mean()} if plan.values else {}
        return {"q_loss": q_loss.detach(), **objective, "entropy": -logp.mean(),
                "alpha": self.log_alpha.detach().exp(), **metrics}

    def check_planner_trains(self) -> None:
        """One line, before any training, where the trained planner would not train: one
        plan for two states, as an update makes it (generators left as they were)."""
        if not self.planner.trainable:
            return
        obs = torch.zeros(2, self.obs_dim, device=self.device)
        with torch.random.fork_rng(devices=[]):
            plan = self.planner.plan(self.objective(obs, self.beta_train, self.train_samples),
                                     obs, record=False, train_rows=2)
        self._require_surrogate(plan)

    def _require_surrogate(self, plan: Plan) -> None:
        if self.planner.trainable and plan.surrogate is None:
            raise MbiapoError(f"planner '{self.cfg.planner.name}' is trainable but its plan has "
                              f"no surrogate when called with gradients enabled, so nothing "
                              f"would train it (see docs/planners.md, 'The contract')")

    # ----------------------------------------------------------------------------- state
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q": self.q_opt, "policy": self.policy_opt, **self.estimator.optimizers()}

    def optimizer_state(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers().items()}

    def load_optimizer_state(self, state: dict) -> None:
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state[name])
