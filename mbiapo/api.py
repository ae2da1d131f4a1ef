"""The Python API in one place: compose a config, train or resume a run, load a checkpoint,
evaluate with any registered planner. ``docs/python-api.md`` walks through it (and a test
runs that page). Extension points: ``mbiapo.planners.register``, ``mbiapo.value.register``."""

from pathlib import Path

from mbiapo.agent import Agent
from mbiapo.checkpoint import load_agent
from mbiapo.config import compose
from mbiapo.evaluate import run_episodes
from mbiapo.train import resume_run, start_run

__all__ = ["Agent", "compose", "evaluate", "load", "resume", "train"]


def train(cfg, out: str | Path) -> dict:
    """Train a new online run in folder ``out`` (see docs/runs.md) to ``cfg.train.steps``;
    returns the last metrics row."""
    return start_run(cfg, Path(out)).run()


def resume(out: str | Path, steps: int | None = None) -> dict:
    """Continue the run in ``out`` to ``steps`` (default: its ``train.steps``)."""
    return resume_run(Path(out), steps).run()


def load(checkpoint: str | Path, device: str = "cpu") -> Agent:
    """The agent of a checkpoint file or run folder."""
    return load_agent(checkpoint, device)[0]


def evaluate(agent: Agent, episodes: int = 10, seed: int = 0, planner: str | None = None,
             overrides: list[str] = (), iters: int | None = None) -> dict:
    """Deterministic episodes (seeds seed, seed+1, ...) on the agent's environment, acting
    with its own planner or the registered ``planner`` (with ``planner.key=value``
    ``overrides``); returns {"returns": [...], ...} as ``evaluate.run_episodes``."""
    return run_episodes(agent, agent.cfg.env.id, episodes, seed,
                        agent.planner_named(planner, list(overrides)), iters,
                        max_episode_steps=agent.cfg.env.max_episode_steps)
