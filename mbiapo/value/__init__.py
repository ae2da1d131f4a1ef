"""Value estimators: Q-hat(s, a) for batches of states and sampled actions, what each one
learns, their config group (``value``) and their registry (``value.kind``).

An estimator is registered with ``register(kind, build, config=ValueConfigSubclass)``.
``build(agent)`` is called while the agent is built, after its Q ensembles, and returns a
``ValueEstimator`` (which owns its parameters, optimizers and learning step: see
``base.py``), or in the simple form a ``ValueEstimate`` or a pair (estimate, estimate for
critic targets), which learns nothing.
"""

from mbiapo.models.q_ensemble import QEnsemble
from mbiapo.registry import Registry
from mbiapo.value.base import (
    AgentParts,
    ModelFreeValue,
    ValueConfig,
    ValueEstimate,
    ValueEstimator,
    as_estimator,
    model_free,
)
from mbiapo.value.model_based import (
    ModelBasedConfig,
    ModelBasedEstimator,
    ModelBasedValue,
    retrace_estimate,
)

VALUES = Registry("value estimator", ValueConfig)
register = VALUES.register
register("model-free", model_free)
register("model-based", ModelBasedEstimator, ModelBasedConfig)


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

__all__ = ["VALUES", "Q_NETWORKS", "AgentParts", "ModelBasedConfig", "ModelBasedEstimator",
           "ModelBasedValue", "ModelFreeValue", "ValueConfig", "ValueEstimate",
           "ValueEstimator", "as_estimator", "mlp_q_ensemble", "model_free", "register",
           "register_q_network", "retrace_estimate"]
