"""Planners: search the tanh-Gaussian parameters lambda = (mu, log_std) that maximize J(s, lambda).

Installed as ``mbiapo.planners``. Every planner has one method,
``plan(objective, obs, iters=None, init=None, record=True) -> Plan``; see ``base.py``.
"""

from mbiapo.planners.adam import AdamPlanner
from mbiapo.planners.base import Objective, Plan, Planner
from mbiapo.planners.cem import CEMPlanner
from mbiapo.planners.direct import DirectPlanner
from mbiapo.planners.iterative import IterativePlanner

PLANNERS = {
    "direct": DirectPlanner,
    "iterative": IterativePlanner,
    "adam": AdamPlanner,
    "cem": CEMPlanner,
}

__all__ = ["Objective", "Plan", "Planner", "PLANNERS", "DirectPlanner", "IterativePlanner",
           "AdamPlanner", "CEMPlanner"]
