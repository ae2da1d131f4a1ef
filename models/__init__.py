"""Networks and distributions (installed as ``mbiapo.models``)."""

from mbiapo.models.mlp import ACTIVATIONS, EnsembleLayerNorm, EnsembleLinear, ensemble_mlp, mlp
from mbiapo.models.policy_nets import DirectPolicyNet, IterativeAmortizerNet
from mbiapo.models.q_ensemble import QEnsemble, pessimistic
from mbiapo.models.tanh_gaussian import TanhGaussian, soft_clamp_log_std
from mbiapo.models.world_model import WorldModel

__all__ = [
    "ACTIVATIONS",
    "mlp",
    "ensemble_mlp",
    "EnsembleLinear",
    "EnsembleLayerNorm",
    "QEnsemble",
    "pessimistic",
    "TanhGaussian",
    "soft_clamp_log_std",
    "DirectPolicyNet",
    "IterativeAmortizerNet",
    "WorldModel",
]
