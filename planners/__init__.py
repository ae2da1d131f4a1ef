"""Planners: search the tanh-Gaussian parameters lambda = (mu, log_std) that maximize J(s, lambda).

Installed as ``mbiapo.planners``. Every planner has one method,
``plan(objective, obs, iters=None, init=None, record=True) -> Plan``; see ``base.py``.
``PLANNERS`` is the one list of names: ``register(name, cls, config=ConfigDataclass)`` adds
one, usable by every command (``--planner NAME``, ``planner.key=value``).
"""

from mbiapo.planners.adam import AdamConfig, AdamPlanner
from mbiapo.planners.base import (
                                  AGENT_FIELDS,
                                  NetworkPlannerConfig,
                                  Objective,
                                  Plan,
                                  Planner,
                                  PlannerConfig,
                                  planner_settings,
)
from mbiapo.planners.cem import CEMConfig, CEMPlanner
from mbiapo.planners.direct import DirectPlanner
from mbiapo.planners.iterative import IterativePlanner
from mbiapo.planners.mppi import MPPIConfig, MPPIPlanner
from mbiapo.registry import Registry

PLANNERS = Registry("planner", PlannerConfig)
register = PLANNERS.register

register("direct", DirectPlanner, NetworkPlannerConfig)
register("iterative", IterativePlanner, NetworkPlannerConfig)
register("adam", AdamPlanner, AdamConfig)
register("cem", CEMPlanner, CEMConfig)
register("mppi", MPPIPlanner, MPPIConfig)


def untrained_planners() -> list[str]:
    """The registered planners that search from scratch (no network to train)."""
    return [name for name in PLANNERS.names() if not PLANNERS.get(name).build.trainable]


__all__ = ["AGENT_FIELDS", "PLANNERS", "AdamConfig", "AdamPlanner", "CEMConfig", "CEMPlanner",
           "DirectPlanner", "IterativePlanner", "MPPIConfig", "MPPIPlanner",
           "NetworkPlannerConfig", "Objective", "Plan", "Planner", "PlannerConfig", "register",
           "planner_settings", "untrained_planners"]
