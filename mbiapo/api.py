"""The Python API in one place: compose a config, train or resume a run, read its metrics,
load a checkpoint, evaluate with any registered planner, plan model-free planners against
model-based values (``transfer``), the analyses (``states``, ``compare``, ``gap``), load
plugins, seed everything.
``docs/python-api.md`` walks through it (and a test runs that page). Extension points:
``mbiapo.planners.register``, ``mbiapo.value.register``, and plugins
(``load_plugin``)."""

from collections.abc import Callable
from pathlib import Path

from mbiapo import transfer as _transfer
from mbiapo.agent import Agent
from mbiapo.analyses.calls import compare, gap, states
from mbiapo.checkpoint import load_agent
from mbiapo.config import compose
from mbiapo.evaluate import Episodes, run_episodes
from mbiapo.registry import load_plugin, load_plugins
from mbiapo.report import read_rows
from mbiapo.seeding import seed_everything
from mbiapo.train import resume_run, start_run

__all__ = ["Agent", "compare", "compose", "evaluate", "gap", "load", "load_plugin", "metrics",
           "resume", "seed_everything", "states", "train", "transfer"]
_entry_points_loaded = False


def train(cfg, out: str | Path, callback: Callable[[dict], bool | None] | None = None
          ) -> dict:
    """Train a new online run in folder ``out`` (see docs/runs.md) to ``cfg.train.steps``;
    returns the last metrics row. ``callback(row)`` sees each metrics row (every
    ``train.eval_every`` steps) as it is written; returning False stops the run there,
    saved and resumable (early stopping)."""
    return start_run(cfg, Path(out)).run(callback=callback)


def resume(out: str | Path, steps: int | None = None,
           callback: Callable[[dict], bool | None] | None = None) -> dict:
    """Continue the run in ``out`` to ``steps`` (default: its ``train.steps``); ``callback``
    as for ``train``."""
    return resume_run(Path(out), steps).run(callback=callback)


def load(checkpoint: str | Path, device: str = "cpu") -> Agent:
    """The agent of a checkpoint file or run folder. Installed plugins (the
    ``mbiapo.plugins`` entry points) are loaded first, as the commands do; a plugin given by
    module or file takes ``load_plugin`` before this call."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        load_plugins()
        _entry_points_loaded = True
    return load_agent(checkpoint, device)[0]


def metrics(out: str | Path) -> list[dict]:
    """Every row of the run's metrics.csv, oldest first, numbers as numbers (an empty cell
    is None)."""
    return read_rows(Path(out))


def evaluate(agent: Agent, episodes: int = 10, seed: int = 0, planner: str | None = None,
             overrides: list[str] = (), iters: int | None = None) -> dict:
    """Deterministic episodes (seeds seed, seed+1, ...) on the agent's environment, acting
    with its own planner or the registered ``planner`` (with ``planner.key=value``
    ``overrides``); returns {"returns": [...], ...} as ``evaluate.run_episodes``."""
    return run_episodes(agent, agent.cfg.env.id, episodes, seed,
                        agent.planner_named(planner, list(overrides)), iters,
                        max_episode_steps=agent.cfg.env.max_episode_steps)


def transfer(checkpoint: str | Path, episodes: int = 10, seed: int = 0,
             planner: str | None = None, overrides: list[str] = (), value: str | None = None,
             data: str | Path | None = None, fit_steps: int = 3000,
             device: str = "cpu") -> dict:
    """``mbiapo plan --model-based``: the checkpoint's planner (or the registered
    ``planner``) plans against a model-based estimate, from the model-based checkpoint
    ``value`` or fitted on ``data`` (default: the replay beside the checkpoint); returns
    the model-based and model-free returns and their ratio."""
    agent = load(checkpoint, device)
    chosen = agent.planner_named(planner, list(overrides))
    return _transfer.plan_model_based(agent, chosen, checkpoint, Episodes(episodes, seed),
                                      value=value, data=data, fit_steps=fit_steps,
                                      name=planner, overrides=list(overrides), device=device)
