"""Amortization gap (paper A.3, Fig. 6): from each planner's estimate lambda, Adam on lambda
(lr 5e-3, 100 steps) finds lambda-hat; the gap per state is J(lambda-hat) - J(lambda)."""

from torch import Tensor

from mbiapo.analyses.common import Params, evaluate
from mbiapo.planners import AdamPlanner, Objective


def amortization_gap(objective: Objective, eval_objective: Objective, obs: Tensor,
                     estimate: Params, steps: int = 100, lr: float = 5e-3,
                     seed: int = 0) -> tuple[Tensor, Tensor]:
    """J (B,) at the estimate (mu, log_std) (B, A) and at its refinement by ``steps`` Adam
    steps on ``objective``, both under ``eval_objective`` with the same random numbers."""
    refiner = AdamPlanner(obs.shape[1], estimate[0].shape[1], steps, lr)
    refined = refiner.plan(objective, obs, init=estimate, record=False)
    before, after = evaluate(eval_objective, [estimate, (refined.mu.detach(),
                                                         refined.log_std.detach())], seed)
    return before, after
