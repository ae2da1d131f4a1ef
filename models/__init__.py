"""Networks and distributions (installed as ``mbiapo.models``)."""

from mbiapo.models.mlp import mlp
from mbiapo.models.policy_nets import DirectPolicyNet, IterativeAmortizerNet
from mbiapo.models.q_ensemble import QEnsemble, pessimistic
from mbiapo.models.tanh_gaussian import TanhGaussian, soft_clamp_log_std

__all__ = [
    "mlp",
    "QEnsemble",
    "pessimistic",
    "TanhGaussian",
    "soft_clamp_log_std",
    "DirectPolicyNet",
    "IterativeAmortizerNet",
]
