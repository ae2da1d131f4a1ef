"""The model-based value estimator: a world-model ensemble unrolled h steps with a distilled
rollout policy, combined by Retrace with the pessimistic Q ensemble (paper A.5), with an
uncertainty penalty on the model's rewards (MOPO, MOReL).

How members combine: each trajectory that the estimate unrolls (one per state and sampled
action) follows one elite member, drawn at random with every elite equally often, for its
whole horizon; the estimate of (s, a) is that trajectory's Retrace value. Planners average J
over their action samples, so the objective averages over elites as it averages over
actions (trajectory sampling, PETS' TS-inf). With a penalty, every model reward is
``r_t - lambda_u * u(s_t, a_t)``, u the elites' spread at (s_t, a_t) (``uncertainty``), so
the estimate drops by ``lambda_u * sum_t w_t u_t`` with the Retrace weights w_t
(``gamma^t`` for retrace_lambda = 1 and no termination) in acting, planner training and
critic targets alike.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mbiapo.bounds import setting
from mbiapo.models.mlp import ACTIVATIONS
from mbiapo.models.policy_nets import DirectPolicyNet
from mbiapo.models.q_ensemble import QEnsemble, pessimistic
from mbiapo.models.tanh_gaussian import TanhGaussian, kl_divergence
from mbiapo.models.world_model import UNCERTAINTIES, Prediction, WorldModel, bootstrap_rows
from mbiapo.value.base import AgentParts, ModelFreeValue, ValueConfig, ValueEstimator

HELDOUT_DECAY = 0.99  # members' held-out errors: exponential average over updates
UNCERTAINTY_ROWS = 32  # the training batch's rows whose uncertainty is logged (a random sample)


@dataclass
class ModelBasedConfig(ValueConfig):
    """The ``value`` group of ``value.kind=model-based`` (paper A.5, Tables 8-9)."""

    horizon: int = setting(2, ge=0)  # model rollout steps h combined by Retrace
    retrace_lambda: float = setting(0.9, ge=0, le=1)
    model_hidden: int = setting(256, ge=1)  # world model (dynamics, reward, termination nets)
    model_layers: int = setting(2, ge=1)
    model_activation: str = setting("leaky_relu", choices=ACTIVATIONS)
    model_layer_norm: bool = True
    model_members: int = setting(1, ge=1)  # world-model ensemble size E (1: one model)
    # members used in rollouts, lowest held-out error (None: all)
    model_elites: int | None = setting(None, ge=1)
    model_probabilistic: bool = False  # state-dependent variances (soft-bounded, NLL-trained)
    # max_sigma (MOPO) or disagreement (MOReL)
    uncertainty: str = setting("disagreement", choices=UNCERTAINTIES)
    # lambda_u: model rewards r - lambda_u * uncertainty
    uncertainty_penalty: float = setting(0.0, ge=0)
    rollout_hidden: int = setting(256, ge=1)  # rollout policy (direct, distilled from the planner)
    rollout_layers: int = setting(2, ge=1)
    rollout_activation: str = setting("relu", choices=ACTIVATIONS)
    rollout_layer_norm: bool = False
    model_pretrain: int = setting(1000, ge=0)  # model updates when the random warm-up ends
    model_targets: bool = True  # critic targets from the model-based estimate

    @classmethod
    def check(cls, cfg) -> str | None:
        members, elites = cfg.model_members, cfg.model_elites
        if elites is not None and elites > members:
            return (f"value.model_elites must lie in [1, value.model_members={members}], "
                    f"got {elites}")
        if cfg.uncertainty == "max_sigma" and not cfg.model_probabilistic:
            return ("value.uncertainty=max_sigma needs value.model_probabilistic=true (a "
                    "learned constant std says nothing about where the model is unsure)")
        if cfg.uncertainty == "disagreement" and (elites or members) < 2 \
                and cfg.uncertainty_penalty > 0:
            return ("value.uncertainty=disagreement needs at least 2 elites "
                    "(value.model_members, value.model_elites) for its penalty")
        return None


QFn = Callable[[Tensor, Tensor], Tensor]
StepFn = Callable[[Tensor, Tensor], Prediction]
PolicyFn = Callable[[Tensor], tuple[Tensor, Tensor]]


def retrace_estimate(q: QFn, step: StepFn, policy: PolicyFn, obs: Tensor, actions: Tensor,
                     alpha: Tensor | float, gamma: float, lam: float, horizon: int) -> Tensor:
    """Model-based Q estimate of (obs, actions) (paper Eq. 14-16): obs, actions (..., S/A) -> (...).

    ``Q(s0, a0) + sum_{t<h} (gamma lam)^t alive_t delta_t`` with
    ``delta_t = r(s_t, a_t) + gamma cont_{t+1} V(s_{t+1}) - Q(s_t, a_t)``,
    ``V(s) = Q(s, a') - alpha log pi(a'|s)``, ``a' ~ policy`` (and ``a_{t+1} = a'``), states
    from the model's mean, and ``alive_t`` the probability that no termination came before t:
    a predicted termination's own reward counts, nothing after it does. lam = 0 gives
    ``r + gamma V(s_1)``; lam = 1 the h-step soft return plus bootstrap.
    ``q(s, a) -> (...)``: a (pessimistic) Q estimate; ``step(s, a) -> Prediction``;
    ``policy(s) -> (a, log pi(a|s))``.
    """
    if horizon == 0:
        return q(obs, actions)
    # Q(s0, a0) cancels: the estimate is sum_t w_t (r_t + gamma cont_{t+1} V(s_{t+1}))
    # - sum_{0<t<h} w_t Q(s_t, a_t) with w_0 = 1, w_{t+1} = w_t gamma lam cont_{t+1}, so the
    # rollout runs first and Q is evaluated once for all h future steps
    s, a = obs, actions
    preds, states, acts, log_pis = [], [], [], []
    for _ in range(horizon):
        pred = step(s, a)
        s = pred.next_obs
        a, log_pi = policy(s)
        preds.append(pred)
        states.append(s)
        acts.append(a)
        log_pis.append(log_pi)
    q_next = q(torch.stack(states), torch.stack(acts))  # (h, ...): Q(s_t, a_t), t = 1..h
    weight, estimate = 1.0, 0.0
    for t, pred in enumerate(preds):
        soft_v = q_next[t] - alpha * log_pis[t]
        estimate = estimate + weight * (pred.reward + gamma * pred.cont * soft_v)
        weight = weight * gamma * lam * pred.cont
        if t + 1 < horizon:
            estimate = estimate - weight * q_next[t]
    return estimate


class ModelDynamics:
    """A world model as the ``Dynamics`` that planners roll out: ``begin(obs (M, S))`` gives
    the step function of one rollout of M trajectories, each following one elite member (drawn
    once, the elites equally often) for all its steps, with rewards lowered by ``penalty``
    times the elites' ``uncertainty`` at every step. Differentiable w.r.t. states and
    actions."""

    differentiable = True

    def __init__(self, model: WorldModel, uncertainty: str = "disagreement",
                 penalty: float = 0.0):
        self.model, self.uncertainty, self.penalty = model, uncertainty, penalty

    def begin(self, obs: Tensor) -> StepFn:
        """``step(s (..., S), a (..., A)) -> Prediction`` for the rows of obs (..., S)."""
        assignment = self.model.assign(obs.shape[:-1].numel(), obs.device)
        if self.penalty == 0:
            return lambda s, a: self.model(s, a, assignment)

        def penalized(s: Tensor, a: Tensor) -> Prediction:
            pred = self.model(s, a, assignment, self.uncertainty)
            return pred._replace(reward=pred.reward - self.penalty * pred.uncertainty)

        return penalized

    def sync(self, envs: list) -> None:
        """A learned model predicts from observations alone: nothing to copy."""


class ModelBasedValue:
    """Retrace over ``horizon`` steps of the world model, with the pessimistic ensemble at
    every step, future actions from the (direct) rollout policy, one elite member per
    trajectory and, with ``penalty`` > 0, rewards lowered by ``penalty`` times the elites'
    ``uncertainty`` (``ModelDynamics``)."""

    def __init__(self, q: QEnsemble, model: WorldModel, rollout: DirectPolicyNet,
                 log_alpha: Tensor, gamma: float, lam: float, horizon: int,
                 uncertainty: str = "disagreement", penalty: float = 0.0):
        self.q_net, self.model, self.rollout = q, model, rollout
        self.dynamics = ModelDynamics(model, uncertainty, penalty)
        self.log_alpha = log_alpha
        self.gamma, self.lam, self.horizon = gamma, lam, horizon

    def _policy(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """One reparameterized rollout-policy sample per state: (..., S) -> (..., A), (...)."""
        flat = obs.reshape(-1, obs.shape[-1])
        actions, _, log_pi = TanhGaussian(*self.rollout(flat)).rsample(1)
        return actions.reshape(*obs.shape[:-1], -1), log_pi.reshape(obs.shape[:-1])

    def estimate(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (..., S), actions (..., A) -> (...)."""
        return retrace_estimate(lambda s, a: pessimistic(self.q_net(s, a), beta),
                                self.dynamics.begin(obs),
                                self._policy, obs, actions, self.log_alpha.detach().exp(),
                                self.gamma, self.lam, self.horizon)

    def __call__(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (B, S), actions (b, N, A) for the first b <= B states -> (b, N)."""
        obs = obs[: actions.shape[0]].unsqueeze(1).expand(-1, actions.shape[1], -1)
        return self.estimate(obs, actions, beta)


class ModelBasedEstimator(ValueEstimator):
    """Owns the world-model ensemble and the rollout policy, and learns both: one maximum
    likelihood step of every member on its own bootstrap resample of the batch, one
    distillation step of the rollout policy towards the planner, and the elites re-chosen
    from each member's held-out error (an exponential average over the batches' held-out
    rows)."""

    def __init__(self, agent):
        v, parts = agent.cfg.value, AgentParts.of(agent)
        obs_dim, act_dim = agent.obs_dim, agent.act_dim
        model = WorldModel(obs_dim, act_dim, v.model_hidden, v.model_layers, v.model_activation,
                           v.model_layer_norm, v.model_members, v.model_elites,
                           v.model_probabilistic)
        rollout = DirectPolicyNet(obs_dim, act_dim, v.rollout_hidden, v.rollout_layers,
                                  v.rollout_activation, v.rollout_layer_norm)
        common = (model, rollout, parts.log_alpha, parts.gamma, v.retrace_lambda, v.horizon,
                  v.uncertainty, float(v.uncertainty_penalty))
        super().__init__(ModelBasedValue(parts.q, *common),
                         ModelBasedValue(parts.q_target, *common) if v.model_targets
                         else ModelFreeValue(parts.q_target))
        self.model, self.rollout = model, rollout
        self.pretrain_updates = v.model_pretrain
        self.measure = v.uncertainty
        # the spread is worth logging where it can vary: several elites, or predicted variances
        self.logs_uncertainty = len(model.elites) > 1 or (
            v.model_probabilistic and v.uncertainty == "max_sigma")
        self.register_buffer("heldout_error", torch.zeros(v.model_members))
        self.register_buffer("heldout_weight", torch.zeros(()))

    def setup_optimizers(self, lr: float) -> None:
        params = [*self.model.parameters(), *self.rollout.parameters()]
        self._optimizers = {"model": torch.optim.Adam(params, lr=lr, fused=True)}

    def next_policy(self, next_obs: Tensor) -> TanhGaussian:
        with torch.no_grad():
            return TanhGaussian(*self.rollout(next_obs))

    def dynamics(self) -> ModelDynamics:
        """The world model with the planning estimate's uncertainty penalty."""
        return self.estimate.dynamics

    def update(self, batch: dict[str, Tensor], planned: TanhGaussian | None = None
               ) -> dict[str, Tensor]:
        """One step of every member on its bootstrap of the batch's training rows (held-out
        rows have ``model_weight`` 0) and, given the planner's distributions at
        ``batch["obs"]``, one distillation step of the rollout policy on
        KL(planned || rollout)."""
        obs, act, rew, next_obs = batch["obs"], batch["act"], batch["rew"], batch["next_obs"]
        model = self.model
        model.update_statistics(obs, rew, next_obs)
        rows = bootstrap_rows(model.members, obs.shape[0], obs.device) \
            if model.members > 1 else None
        model_loss = model.loss(obs, act, rew, next_obs, batch["done"], batch["model_weight"],
                                rows)
        loss, metrics = model_loss, {"model_loss": model_loss.detach()}
        if planned is not None:
            kl = kl_divergence(planned, TanhGaussian(*self.rollout(obs))).mean()
            loss, metrics["distill_kl"] = loss + kl, kl.detach()
        opt = self._optimizers["model"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        held = batch["model_weight"] == 0
        if model.members > 1 and held.any():
            self._track_heldout(model.member_errors(obs[held], act[held], next_obs[held]))
        if self.logs_uncertainty:
            with torch.no_grad():
                rows = slice(UNCERTAINTY_ROWS)
                metrics["uncertainty"] = model(obs[rows], act[rows], uncertainty=self.measure
                                               ).uncertainty.mean()
        return metrics

    @torch.no_grad()
    def _track_heldout(self, errors: Tensor) -> None:
        """Average each member's held-out error (E,) in and re-choose the elites."""
        self.heldout_error.mul_(HELDOUT_DECAY).add_(errors, alpha=1 - HELDOUT_DECAY)
        self.heldout_weight.mul_(HELDOUT_DECAY).add_(1 - HELDOUT_DECAY)
        self.model.set_elites(self.heldout_error / self.heldout_weight)

    @torch.no_grad()
    def evaluate(self, held: dict[str, Tensor]) -> dict[str, float]:
        """On held-out transitions: the one-step error of the elites' mean next state, its
        ratio to predicting no change, the members' errors (several members) and the mean
        uncertainty there and with uniform random actions at the same states (off the data)."""
        obs, act, next_obs = held["obs"], held["act"], held["next_obs"]
        error, no_change = self.model.one_step_error(obs, act, next_obs)
        metrics = {"model_error": error, "model_error_ratio": error / max(no_change, 1e-12)}
        if self.model.members > 1:
            errors = self.model.member_errors(obs, act, next_obs)
            metrics |= {"model_member_error_min": errors.min().item(),
                        "model_member_error_max": errors.max().item()}
        if self.logs_uncertainty:
            g = torch.Generator(act.device).manual_seed(0)  # leaves the training RNG alone
            uniform = torch.rand(act.shape, generator=g, device=act.device) * 2 - 1
            metrics |= {
                "uncertainty_heldout": self.model(obs, act, uncertainty=self.measure)
                .uncertainty.mean().item(),
                "uncertainty_random_actions": self.model(obs, uniform, uncertainty=self.measure)
                .uncertainty.mean().item()}
        return metrics
