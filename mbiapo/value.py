"""Value estimators: Q-hat(s, a) for batches of states and sampled actions, their config
group (``value``) and their registry (``value.kind``).

A value estimator is registered with ``register(kind, build, config=ValueConfigSubclass)``:
``build(agent) -> ValueEstimate`` or ``(estimate, target_estimate)`` (the second for critic
targets, default: the model-free one on the target Q nets) is called while the agent is
built, after its Q ensembles. Modules it sets on the agent are trained by nothing, but they
are saved, loaded and moved to the device with it.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import Tensor

from mbiapo.models.policy_nets import DirectPolicyNet
from mbiapo.models.q_ensemble import QEnsemble, pessimistic
from mbiapo.models.tanh_gaussian import TanhGaussian
from mbiapo.models.world_model import Prediction, WorldModel
from mbiapo.registry import Registry

ValueEstimate = Callable[[Tensor, Tensor, float], Tensor]
"""What the agent plans against: ``value(obs (B, S), actions (b, N, A), beta) -> Q-hat (b, N)``
for the first b <= B states, differentiable w.r.t. the actions (planners take dJ/dlambda
from autograd through it). ``beta`` is the pessimism to apply, where the estimate has any.
``ModelFreeValue`` and ``ModelBasedValue`` are two; any differentiable callable will do."""


@dataclass
class ValueConfig:
    """The ``value`` group: the Q ensemble every agent has, pessimism, and the model-based
    estimator's settings (paper A.5, Tables 8-9). A registered value estimator's config
    subclasses it."""

    kind: str = MISSING  # a registered value estimator (default: configs/default.yaml)
    q_network: str = "mlp"  # a registered Q network builder (mbiapo.value.Q_NETWORKS)
    members: int = 2  # Q ensemble size
    hidden: int = 256  # Q networks
    layers: int = 2
    activation: str = "relu"  # one of models.mlp.ACTIVATIONS
    layer_norm: bool = False
    beta_train: float = 1.0  # pessimism for planner training and targets
    beta_collect: float = 1.0  # pessimism while acting
    # model-based only
    horizon: int = 2  # model rollout steps h combined by Retrace
    retrace_lambda: float = 0.9
    model_hidden: int = 256  # world model (dynamics, reward and termination networks)
    model_layers: int = 2
    model_activation: str = "leaky_relu"
    model_layer_norm: bool = True
    rollout_hidden: int = 256  # rollout policy (direct, distilled from the planner)
    rollout_layers: int = 2
    rollout_activation: str = "relu"
    rollout_layer_norm: bool = False
    model_pretrain: int = 1000  # model updates when the random warm-up ends
    model_targets: bool = True  # critic targets from the model-based estimate


class ModelFreeValue:
    """Pessimistic ensemble estimate ``mean_i Q_i - beta std_i Q_i``."""

    def __init__(self, q: QEnsemble):
        self.q_net = q

    def __call__(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (B, S), actions (b, N, A) for the first b <= B states -> (b, N)."""
        return pessimistic(self.q_net(obs[: actions.shape[0]].unsqueeze(1), actions), beta)


QFn = Callable[[Tensor, Tensor], Tensor]
StepFn = Callable[[Tensor, Tensor], Prediction]
PolicyFn = Callable[[Tensor], tuple[Tensor, Tensor]]


def retrace_estimate(q: QFn, step: StepFn, policy: PolicyFn, obs: Tensor, actions: Tensor,
                     alpha: Tensor | float, gamma: float, lam: float, horizon: int) -> Tensor:
    """Model-based Q estimate of (obs, actions) (paper Eq. 14-16): obs, actions (..., S/A) -> (...).

    ``Q(s0, a0) + sum_{t<h} (gamma lam)^t alive_t delta_t`` with
    ``delta_t = r(s_t, a_t) + gamma cont_{t+1} V(s_{t+1}) - Q(s_t, a_t)``,
    ``V(s) = Q(s, a') - alpha log pi(a'|s)``, ``a' ~ policy`` (and ``a_{t+1} = a'``), states
    from the model's mean, and ``alive_t`` the probability that no termination came before t.
    lam = 0 gives ``r + gamma V(s_1)``; lam = 1 the h-step soft return plus bootstrap.
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


class ModelBasedValue:
    """Retrace over ``horizon`` steps of the world model, with the pessimistic ensemble at
    every step and future actions from the (direct) rollout policy."""

    def __init__(self, q: QEnsemble, model: WorldModel, rollout: DirectPolicyNet,
                 log_alpha: Tensor, gamma: float, lam: float, horizon: int):
        self.q_net, self.model, self.rollout = q, model, rollout
        self.log_alpha = log_alpha
        self.gamma, self.lam, self.horizon = gamma, lam, horizon

    def _policy(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """One reparameterized rollout-policy sample per state: (..., S) -> (..., A), (...)."""
        flat = obs.reshape(-1, obs.shape[-1])
        actions, _, log_pi = TanhGaussian(*self.rollout(flat)).rsample(1)
        return actions.reshape(*obs.shape[:-1], -1), log_pi.reshape(obs.shape[:-1])

    def estimate(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (..., S), actions (..., A) -> (...)."""
        return retrace_estimate(lambda s, a: pessimistic(self.q_net(s, a), beta), self.model,
                                self._policy, obs, actions, self.log_alpha.detach().exp(),
                                self.gamma, self.lam, self.horizon)

    def __call__(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (B, S), actions (b, N, A) for the first b <= B states -> (b, N)."""
        obs = obs[: actions.shape[0]].unsqueeze(1).expand(-1, actions.shape[1], -1)
        return self.estimate(obs, actions, beta)


def model_free(agent) -> tuple[ValueEstimate, ValueEstimate]:
    return ModelFreeValue(agent.q), ModelFreeValue(agent.q_target)


def model_based(agent) -> tuple[ValueEstimate, ValueEstimate]:
    """Builds the agent's world model and rollout policy (``agent.model``, ``agent.rollout``),
    which ``Agent.update`` then trains."""
    v, t, obs_dim, act_dim = agent.cfg.value, agent.cfg.train, agent.obs_dim, agent.act_dim
    agent.model = WorldModel(obs_dim, act_dim, v.model_hidden, v.model_layers,
                             v.model_activation, v.model_layer_norm)
    agent.rollout = DirectPolicyNet(obs_dim, act_dim, v.rollout_hidden, v.rollout_layers,
                                    v.rollout_activation, v.rollout_layer_norm)
    parts = (agent.model, agent.rollout, agent.log_alpha, t.gamma, v.retrace_lambda, v.horizon)
    target = (ModelBasedValue(agent.q_target, *parts) if v.model_targets
              else ModelFreeValue(agent.q_target))
    return ModelBasedValue(agent.q, *parts), target


VALUES = Registry("value estimator", ValueConfig)
register = VALUES.register
register("model-free", model_free)
register("model-based", model_based)


def mlp_q_ensemble(obs_dim: int, act_dim: int, cfg: ValueConfig) -> QEnsemble:
    """Stacked MLPs (``value.members`` x ``value.hidden`` x ``value.layers``)."""
    return QEnsemble(obs_dim, act_dim, cfg.members, cfg.hidden, cfg.layers, cfg.activation,
                     cfg.layer_norm)


Q_NETWORKS = Registry("Q network", ValueConfig)
"""``value.q_network``: ``build(obs_dim, act_dim, value_cfg) -> module`` called as
``q(obs (..., S), actions (..., A)) -> (E, ...)``, one estimate per ensemble member
(``pessimistic`` reduces over them). Its target copy and optimizer come with it."""
register_q_network = Q_NETWORKS.register
register_q_network("mlp", mlp_q_ensemble)
