"""The analyses as Python calls with the commands' defaults: ``states``, ``compare`` and
``gap`` (``mbiapo.api`` exports them; the command handlers call them), and what every
analysis starts from (``saved_states``, ``setup``; the agent: ``common.analysis_agent``)."""

from pathlib import Path

import torch

from mbiapo.agent import Agent
from mbiapo.analyses.common import Setup, analysis_agent, output_dir, planners_from_spec
from mbiapo.errors import MbiapoError
from mbiapo.paths import check_new_file, temporary, written
from mbiapo.planners import sequence_planners, untrained_planners


def positive(**values) -> None:
    """One line for the first count below 1 (named as its flag)."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise MbiapoError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def saved_states(path, agent: Agent) -> torch.Tensor:
    """The states file's observations (N, S) on the agent's device."""
    from mbiapo.analyses.states import load_states

    return torch.as_tensor(load_states(path, agent), device=agent.device)


def setup(agent: Agent, obs, out, force: bool, checkpoint, value: str | None,
          beta: float | None, seed: int) -> Setup:
    """The analysis' Setup; creates ``out``, so call it once every input has been checked."""
    source = {"checkpoint": str(checkpoint),
              "value": agent.cfg.value.kind if value is None else value}
    return Setup(agent, obs, output_dir(Path(out), force), beta, seed, source)


def default_planners(agent: Agent) -> list[str]:
    """The trained planner, every untrained single-step one, and the sequence planners
    where the agent has a model to plan through."""
    sequence = sequence_planners() if agent.dynamics is not None else []
    return [agent.cfg.planner.name, *untrained_planners(), *sequence]


def states(checkpoint, n: int, out, seed: int = 0, episodes: int = 5,
           deterministic: bool = False, device: str = "cpu", force: bool = False) -> dict:
    """``mbiapo states``: n on-policy states of the checkpoint's planner to ``out`` (HDF5)."""
    from mbiapo.analyses.states import collect_states, save_states
    from mbiapo.checkpoint import load_agent

    positive(n=n, episodes=episodes)
    out = Path(out)
    check_new_file(out, force)
    agent, _ = load_agent(checkpoint, device)
    found = collect_states(agent, n, seed, episodes, deterministic)
    with written(out, temporary(out)):  # save_states' temporary file
        save_states(out, found, agent, {"checkpoint": str(checkpoint), "seed": seed,
                                        "planner": agent.cfg.planner.name,
                                        "deterministic": deterministic})
    return {"out": str(out), "env": agent.cfg.env.id, "states": len(found),
            "obs_dim": agent.obs_dim}


def compare(checkpoint, states, out, planners: str | None = None, iters: int = 100,
            samples: int | None = None, eval_samples: int = 100, value: str | None = None,
            beta: float | None = None, seed: int = 0, overrides: list[str] = (),
            device: str = "cpu", force: bool = False) -> dict:
    """``mbiapo compare``: every planner (``planners``: "a,b,c=CKPT"; default: see
    ``default_planners``) for ``iters`` iterations on the saved states; the summary."""
    from mbiapo.analyses import compare as analysis

    positive(iters=iters, samples=samples, eval_samples=eval_samples)
    agent = analysis_agent(str(checkpoint), value, device, seed)
    obs = saved_states(states, agent)
    chosen = planners_from_spec(agent, planners, list(overrides), default_planners(agent),
                                runs_for=iters)
    return analysis.run(setup(agent, obs, out, force, checkpoint, value, beta, seed), chosen,
                        iters, samples, eval_samples, list(overrides))


def gap(checkpoint, states, out, planners: str | None = None, steps: int = 100,
        lr: float = 5e-3, extra_iters: int = 5, samples: int = 100, eval_samples: int = 1000,
        value: str | None = None, beta: float | None = None, seed: int = 0,
        overrides: list[str] = (), device: str = "cpu", force: bool = False) -> dict:
    """``mbiapo gap``: the amortization gap of each planner (default: the checkpoint's)."""
    from mbiapo.analyses import gap as analysis

    positive(steps=steps, samples=samples, eval_samples=eval_samples)
    if extra_iters < 0:
        raise MbiapoError(f"--extra-iters must be >= 0, got {extra_iters}")
    agent = analysis_agent(str(checkpoint), value, device, seed)
    obs = saved_states(states, agent)
    chosen = planners_from_spec(agent, planners, list(overrides), [agent.cfg.planner.name])
    return analysis.run(setup(agent, obs, out, force, checkpoint, value, beta, seed), chosen,
                        steps, lr, extra_iters, samples, eval_samples)
