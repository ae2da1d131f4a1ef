"""Planners: search the tanh-Gaussian parameters lambda = (mu, log_std) that maximize J(s, lambda).

Installed as ``mbiapo.planners``. Every planner has one method,
``plan(objective, obs, iters=None, init=None, record=True) -> Plan``; see ``base.py``.
``PLANNERS`` is the one list of names: ``register(name, cls, config=ConfigDataclass)`` adds
one, usable by every command (``--planner NAME``, ``planner.key=value``).
"""

from mbiapo.planners.adam import AdamConfig, AdamPlanner
from mbiapo.planners.adam_sequence import AdamSequenceConfig, AdamSequencePlanner
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
from mbiapo.planners.cem_sequence import CEMSequenceConfig, CEMSequencePlanner
from mbiapo.planners.direct import DirectPlanner
from mbiapo.planners.iterative import IterativePlanner
from mbiapo.planners.mppi import MPPIConfig, MPPIPlanner
from mbiapo.planners.mppi_sequence import MPPISequenceConfig, MPPISequencePlanner
from mbiapo.planners.sequence import SequenceConfig, SequencePlanner
from mbiapo.registry import Registry

PLANNERS = Registry("planner", PlannerConfig)
register = PLANNERS.register

register("direct", DirectPlanner, NetworkPlannerConfig)
register("iterative", IterativePlanner, NetworkPlannerConfig)
register("adam", AdamPlanner, AdamConfig)
register("cem", CEMPlanner, CEMConfig)
register("mppi", MPPIPlanner, MPPIConfig)
register("mppi-seq", MPPISequencePlanner, MPPISequenceConfig)
register("cem-seq", CEMSequencePlanner, CEMSequenceConfig)
register("adam-seq", AdamSequencePlanner, AdamSequenceConfig)


def sequence_planners() -> list[str]:
    """The registered planners that plan action sequences through a model."""
    return [name for name in PLANNERS.names()
            if issubclass(PLANNERS.get(name).config, SequenceConfig)]


def untrained_planners() -> list[str]:
    """The registered single-step planners that search from scratch (no network to train,
    no model needed)."""
    sequence = sequence_planners()
    return [name for name in PLANNERS.names()
            if not PLANNERS.get(name).build.trainable and name not in sequence]


__all__ = ["AGENT_FIELDS", "PLANNERS", "AdamConfig", "AdamPlanner", "AdamSequenceConfig",
           "AdamSequencePlanner", "CEMConfig", "CEMPlanner", "CEMSequenceConfig",
           "CEMSequencePlanner", "DirectPlanner", "IterativePlanner", "MPPIConfig",
           "MPPIPlanner", "MPPISequenceConfig", "MPPISequencePlanner", "NetworkPlannerConfig",
           "Objective", "Plan", "Planner", "PlannerConfig", "SequenceConfig", "SequencePlanner",
           "register", "planner_settings", "sequence_planners", "untrained_planners"]
