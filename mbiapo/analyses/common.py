"""Shared pieces of the analyses: the value estimate to analyse, what an analysis works on
(``Setup``), J under a common estimator, following a planner's search, and output files."""

import csv
import gc
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor

from mbiapo.agent import Agent
from mbiapo.config import overrides_for
from mbiapo.errors import MbiapoError
from mbiapo.paths import check_writable_folder
from mbiapo.planners import PLANNERS, Objective, Plan, Planner
from mbiapo.planners.base import Clock
from mbiapo.planners.sequence import check_model
from mbiapo.value import ModelBasedEstimator, ModelFreeValue

ObjectiveFn = Callable[[Tensor], Objective]
"""``objective_fn(obs (B, S)) -> Objective`` for those states."""

Params = tuple[Tensor, Tensor]


def analysis_agent(checkpoint: str, value: str | None, device: str, seed: int = 0) -> Agent:
    """The checkpoint's agent with the value estimate to analyse: ``None`` keeps its own,
    "model-free" uses its Q ensemble, "model-based" its world model, or for a model-free
    checkpoint the model fitted on its replay data (as ``mbiapo plan --model-based``; cached);
    any other registered estimator is built for its Q nets (one that learns parameters of
    its own must come trained in the checkpoint)."""
    from mbiapo import transfer
    from mbiapo.checkpoint import load_agent

    agent, _ = load_agent(checkpoint, device)
    if value is None or value == agent.cfg.value.kind:
        return agent
    if value == "model-free":
        agent.value = ModelFreeValue(agent.q)
        return agent
    if value == "model-based" and not isinstance(agent.estimator, ModelBasedEstimator):
        return transfer.fitted(agent, checkpoint, None, 3000, seed)[0]
    return transfer.with_estimator(agent, value)


def planners_from_spec(agent: Agent, spec: str | None, overrides: list[str],
                       default: list[str], runs_for: int | None = None) -> dict[str, Planner]:
    """Planners by name from ``spec`` ("a,b,c=CKPT") or ``default``: the checkpoint's own,
    a trained one from another checkpoint of the same environment, or an untrained one from
    its config with the ``planner.key=value`` overrides it has (each must fit one).
    ``runs_for``: the iterations the analysis runs every planner for, which a
    ``planner.iters`` override would not change (refused)."""
    from mbiapo.checkpoint import load_agent

    wrong = [item for item in overrides if not item.startswith("planner.")]
    if wrong:
        raise MbiapoError(f"only planner.* settings can be overridden here, got {wrong[0]}")
    if runs_for is not None and any(item.partition("=")[0] == "planner.iters"
                                    for item in overrides):
        raise MbiapoError(f"set the iterations with --iters, not planner.iters: this analysis "
                          f"runs every planner for --iters ({runs_for})")
    planners, used = {}, set()
    for item in spec.split(",") if spec else default:
        name, _, source = item.strip().partition("=")
        PLANNERS.get(name)  # says so if unknown
        if name in planners:
            raise MbiapoError(f"planner '{name}' is listed twice")
        if source:
            other, _ = load_agent(source, str(agent.device))
            if other.cfg.planner.name != name:
                raise MbiapoError(f"{source} trained a '{other.cfg.planner.name}' planner, "
                                  f"not '{name}'")
            if (other.cfg.env.id, other.obs_dim, other.act_dim) != \
                    (agent.cfg.env.id, agent.obs_dim, agent.act_dim):
                raise MbiapoError(f"{source} was trained on {other.cfg.env.id}, the "
                                  f"checkpoint on {agent.cfg.env.id}")
            planners[name] = other.planner
        elif PLANNERS.get(name).build.trainable:
            planners[name] = agent.planner_named(name)  # says so if it has none
        else:
            mine = overrides_for(name, overrides)
            used.update(mine)
            planners[name] = agent.planner_named(name, mine)
            check_model(planners[name], agent.dynamics is not None)
    unused = [item for item in overrides if item not in used]
    if unused:
        listed = [n for n in planners if not PLANNERS.get(n).build.trainable]
        raise MbiapoError(f"'{unused[0]}' sets no listed untrained planner "
                          f"({', '.join(listed) or 'none listed'})")
    return planners


def agent_objective(agent: Agent, beta: float | None, samples: int | None) -> ObjectiveFn:
    """J under the agent's value estimate with ``beta`` (default: value.beta_collect, what
    the planner optimizes when acting) and ``samples`` per estimate (default planner.samples)."""
    beta = agent.cfg.value.beta_collect if beta is None else beta
    samples = agent.cfg.planner.samples if samples is None else samples
    if samples < 1:
        raise MbiapoError(f"--samples must be >= 1, got {samples}")
    return lambda obs: agent.objective(obs, beta, samples)


@dataclass
class Setup:
    """What an analysis works on: the agent with the value estimate to analyse, the saved
    states ``obs`` (N, S) (None for analyses that make their own), the results folder ``out``,
    the pessimism ``beta`` of J (None: value.beta_collect) and the seed. ``source`` names the
    checkpoint and the value estimate in summary.json."""

    agent: Agent
    obs: Tensor | None
    out: Path
    beta: float | None
    seed: int
    source: dict

    def __post_init__(self):
        self.out.mkdir(parents=True, exist_ok=True)

    def objective(self, samples: int | None) -> ObjectiveFn:
        """J at given states with ``samples`` per estimate (None: planner.samples)."""
        return agent_objective(self.agent, self.beta, samples)

    @property
    def beta_used(self) -> float:
        """``beta``, or value.beta_collect when it is None."""
        return self.agent.cfg.value.beta_collect if self.beta is None else self.beta

    def header(self, analysis: str, n_states: int) -> dict:
        """The first fields of summary.json."""
        cfg = self.agent.cfg
        return {"analysis": analysis, "env": cfg.env.id, **self.source,
                "beta": self.beta_used,
                "states": n_states, "seed": self.seed, "threads": torch.get_num_threads(),
                "planner_config": OmegaConf.to_container(cfg.planner)}

    def finish(self, summary: dict, plot: Callable[[Path], object], table: str) -> dict:
        """Write summary.json, draw the figures from the written files, and return what the
        command prints: the summary, the folder and a text table."""
        write_json(self.out / "summary.json", summary)
        plot(self.out)
        return {**summary, "out": str(self.out), "table": table}


def evaluate(objective: Objective, params: list[Params], seed: int = 0,
             on_step: Callable[[], object] | None = None) -> Tensor:
    """J (K, B) at each of K parameter sets (mu, log_std) (B, A), every one with the same
    random numbers, so differences between them are not sampling noise. ``on_step()`` is
    called after each set (progress bars)."""
    values = []
    with torch.no_grad(), torch.random.fork_rng(devices=_devices(params)):
        for mu, log_std in params:
            torch.manual_seed(seed)
            values.append(objective(mu, log_std))
            if on_step:
                on_step()
    return torch.stack(values)


def _devices(params: list[Params]) -> list[int]:
    device = params[0][0].device if params else torch.device("cpu")
    return [device.index or 0] if device.type == "cuda" else []


def follow(planner: Planner, objective: Objective, obs: Tensor, iters: int,
           init: Params | None = None, on_step: Callable[[], object] | None = None,
           seed: int | None = None) -> tuple[list[Params], list[float], Plan]:
    """Run ``planner`` for ``iters`` iterations and return the parameters after each one,
    the wall-clock seconds since the start at that point, and its final ``Plan`` (a sequence
    planner's holds its action sequence). The planner evaluates J only as far
    as its own search needs; the analysis evaluates it afterwards with ``evaluate``. With
    ``seed``, the planner's own samples start from ``torch.manual_seed(seed)``."""
    if seed is not None:
        torch.manual_seed(seed)
    params, seconds = [], []
    clock = Clock(obs.device)

    def record(k: int, mu: Tensor, log_std: Tensor) -> None:
        seconds.append(clock())
        params.append((mu.clone(), log_std.clone()))
        if on_step:
            on_step()

    collecting = gc.isenabled()
    gc.disable()  # as timeit does: a collection inside the timed search is not its cost
    try:
        with torch.no_grad():  # trainable planners build no graph; adam enables grad itself
            plan = planner.plan(objective, obs, iters, init, record=False, callback=record)
    finally:
        if collecting:
            gc.enable()
    if not params:
        raise MbiapoError(f"planner {type(planner).__name__} never called callback(k, mu, "
                          f"log_std): analyses follow a search through it, after every "
                          f"iteration (docs/planners.md, 'The contract')")
    return params, seconds, plan


def output_dir(out: Path, force: bool) -> Path:
    """Create ``out``; refuse a non-empty folder unless ``force`` (never clobber results)."""
    check_writable_folder(out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MbiapoError(f"--out {out} exists and is not empty; choose another folder or "
                          f"pass --force to overwrite its results")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    """Rows with numeric fields as floats."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=_plain) + "\n")


def _plain(value):
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def mean_std(values: Tensor) -> dict[str, float]:
    """{"mean", "std"} of a 1-D tensor (population std)."""
    return {"mean": values.mean().item(), "std": values.std(correction=0).item()}
