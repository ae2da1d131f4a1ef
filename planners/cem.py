"""Cross-entropy method: the sampling planner that refits to the best samples."""

from dataclasses import dataclass

from torch import Tensor

from mbiapo.bounds import setting
from mbiapo.models.tanh_gaussian import LOG_STD_MIN
from mbiapo.planners.base import PlannerConfig
from mbiapo.planners.sampling import SamplingPlanner


@dataclass
class CEMConfig(PlannerConfig):
    """Paper B.4: 100 samples, 10 elites, 100 iterations."""

    iters: int = 100
    population: int = setting(100, ge=1)  # action samples scored per iteration
    elites: int = setting(10, ge=1)  # the best ones, refitted
    # new = s * old + (1 - s) * refit (the paper's step 0.01: 0.99)
    smoothing: float = setting(0.0, ge=0, lt=1)

    @staticmethod
    def check(cfg) -> str | None:
        if cfg.elites > cfg.population:
            return (f"planner.elites must lie in [1, planner.population], got {cfg.elites} "
                    f"and {cfg.population}")
        return None


class CEMPlanner(SamplingPlanner):
    """Refits mu, sigma to the top-k samples (elites)."""

    def __init__(self, obs_dim: int, act_dim: int, iters: int = 100, population: int = 100,
                 elites: int = 10, smoothing: float = 0.0, min_log_std: float = LOG_STD_MIN):
        if not 0 < elites <= population:
            raise ValueError(f"cem needs 0 < elites <= population, got {elites} and "
                             f"{population}")
        super().__init__(act_dim, iters, population, smoothing, min_log_std)
        self.elites = elites

    def refit(self, u: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        top = score.topk(self.elites, dim=1).indices  # (B, k)
        elite = u.gather(1, top.unsqueeze(-1).expand(-1, -1, self.act_dim))
        return elite.mean(1), elite.std(1, correction=0).clamp_min(1e-12).log()
