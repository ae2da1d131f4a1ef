"""The value-estimator interface, its config group, and the model-free estimator.

A value estimator gives the agent what it plans against (``estimate``) and what its critic
targets bootstrap from (``target``), and owns whatever else it learns: its modules are its
parameters (saved, loaded and moved to the device with the agent), its optimizers are
checkpointed with the agent's, and ``update`` is its learning step, which ``Agent.update``
calls after its own. The agent never asks which kind it has.
"""

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from omegaconf import MISSING
from torch import Tensor, nn

from mbiapo.bounds import setting
from mbiapo.models.mlp import ACTIVATIONS
from mbiapo.models.q_ensemble import QEnsemble, pessimistic
from mbiapo.models.tanh_gaussian import TanhGaussian

ValueEstimate = Callable[[Tensor, Tensor, float], Tensor]
"""What the agent plans against: ``value(obs (B, S), actions (b, N, A), beta) -> Q-hat (b, N)``
for the first b <= B states, differentiable w.r.t. the actions (planners take dJ/dlambda
from autograd through it). ``beta`` is the pessimism to apply, where the estimate has any.
Any differentiable callable will do (``agent.value = ...``)."""


@dataclass
class ValueConfig:
    """The ``value`` group: the Q ensemble every agent has and its pessimism. A registered
    value estimator's config subclasses it (``ModelBasedConfig`` adds the world model)."""

    kind: str = MISSING  # a registered value estimator (default: configs/default.yaml)
    q_network: str = "mlp"  # a registered Q network builder (mbiapo.value.Q_NETWORKS)
    members: int = setting(2, ge=1)  # Q ensemble size
    hidden: int = setting(256, ge=1)  # Q networks
    layers: int = setting(2, ge=1)
    activation: str = setting("relu", choices=ACTIVATIONS)
    layer_norm: bool = False
    beta_train: float = setting(1.0, ge=0)  # pessimism for planner training and targets
    beta_collect: float = setting(1.0, ge=0)  # pessimism while acting

    @classmethod
    def check(cls, cfg) -> str | None:
        """What is wrong with these settings beyond their types and each field's declared
        values (``mbiapo.bounds.setting``), as one line; or None."""
        return None

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


class ModelFreeValue:
    """Pessimistic ensemble estimate ``mean_i Q_i - beta std_i Q_i`` of a Q ensemble."""

    def __init__(self, q: QEnsemble):
        self.q_net = q

    def __call__(self, obs: Tensor, actions: Tensor, beta: float) -> Tensor:
        """obs (B, S), actions (b, N, A) for the first b <= B states -> (b, N)."""
        return pessimistic(self.q_net(obs[: actions.shape[0]].unsqueeze(1), actions), beta)


class ValueEstimator(nn.Module):
    """Base of every value estimator; as it stands, one that learns nothing beyond the
    agent's Q ensemble.

    - ``estimate`` / ``target``: ``ValueEstimate``s for planning and for critic targets.
    - ``next_policy(next_obs (B, S))``: the distribution of the next actions critic targets
      use, or None for the agent's planner (planned with the batch, one call).
    - ``dynamics()``: the model sequence planners plan through, or None.
    - ``update(batch, planned) -> metrics``: one learning step on a replay batch (obs, act,
      rew, next_obs, done, model_weight), given the planner's distributions at its states
      (None during pre-training). Returns {name: scalar tensor}: each becomes a column of
      ``metrics.csv``.
    - ``pretrain_updates``: ``update(batch, None)`` calls on the warm-up data, before the
      agent's first update (and offline, before the first update).
    - ``evaluate(held) -> metrics`` on held-out transitions, at each evaluation.
    - ``setup_optimizers(lr)``: called once its modules are on the device; the default is
      one fused Adam, "value", over its own parameters (none: no optimizer).

    The agent's Q ensembles and temperature come from ``agent`` and are not the estimator's
    own parameters: keep them out of module attributes (``AgentParts`` does).
    """

    pretrain_updates = 0

    def __init__(self, estimate: ValueEstimate, target: ValueEstimate):
        super().__init__()
        self.estimate, self.target = estimate, target
        self._optimizers: dict[str, torch.optim.Optimizer] = {}

    def next_policy(self, next_obs: Tensor) -> TanhGaussian | None:
        return None

    def dynamics(self):
        """The model that sequence planners roll out (``mbiapo.objective.Dynamics``), or
        None where the estimator has none."""
        return None

    def update(self, batch: dict[str, Tensor], planned: TanhGaussian | None = None
               ) -> dict[str, Tensor]:
        return {}

    def evaluate(self, held: dict[str, Tensor]) -> dict[str, float]:
        return {}

    def setup_optimizers(self, lr: float) -> None:
        params = list(self.parameters())
        if params:
            self._optimizers = {"value": torch.optim.Adam(params, lr=lr, fused=True)}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._optimizers


@dataclass(frozen=True)
class AgentParts:
    """What an estimator uses of its agent without owning it (a plain holder, so the
    modules are not registered, saved or trained twice)."""

    q: nn.Module
    q_target: nn.Module
    log_alpha: Tensor
    gamma: float

    @classmethod
    def of(cls, agent) -> "AgentParts":
        return cls(agent.q, agent.q_target, agent.log_alpha, float(agent.cfg.train.gamma))


def model_free(agent) -> ValueEstimator:
    """The pessimistic Q ensemble: the agent's Q nets to plan, its target nets for targets."""
    return ValueEstimator(ModelFreeValue(agent.q), ModelFreeValue(agent.q_target))


def as_estimator(built, agent) -> ValueEstimator:
    """What a registered builder returned, as a ``ValueEstimator``: an estimator as it is; a
    ``ValueEstimate`` or a pair (estimate, target estimate) of them (the simple form, which
    learns nothing) wrapped, the target defaulting to the model-free one on the target Q
    nets."""
    if isinstance(built, ValueEstimator):
        return built
    estimate, target = built if isinstance(built, tuple) else (built, None)
    return ValueEstimator(estimate, target or ModelFreeValue(agent.q_target))
