"""Synthetic objectives with a known optimum, for planner tests."""

import torch

from mbiapo.objective import SoftObjective


def quadratic_objective(target: torch.Tensor, alpha: float = 0.01, scale: float = 10.0,
                        samples: int = 10) -> SoftObjective:
    """Q(s, a) = -scale ||a - target_s||^2 for B states; target (B, A) in (-1, 1).

    As alpha -> 0 the optimum is mu = atanh(target) with a small sigma.
    """
    return SoftObjective(lambda a: -scale * (a - target.unsqueeze(1)).pow(2).sum(-1), alpha,
                         target.shape[1], samples)


class HiddenTargets:
    """Objectives whose optimum is hidden from the state: targets (B, A) are random and the
    observations are unrelated noise, so a planner can only find them through J's gradient."""

    def __init__(self, act_dim: int = 2, obs_dim: int = 3):
        self.act_dim, self.obs_dim = act_dim, obs_dim

    def sample(self, n: int, samples: int = 10) -> tuple[torch.Tensor, SoftObjective]:
        targets = torch.rand(n, self.act_dim) * 1.6 - 0.8
        return torch.randn(n, self.obs_dim), quadratic_objective(targets, samples=samples)
