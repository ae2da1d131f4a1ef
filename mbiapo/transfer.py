"""Transfer: a planner trained model-free plans against a model-based value estimate.

A planner's weights depend only on (|S|, |A|), so it can optimize any objective of the same
shapes. The model-based estimator (world model, Q nets, rollout policy) comes either from a
model-based checkpoint (paper Fig. 9) or is fitted on the spot from replay data: the world
model by maximum likelihood, the rollout policy by distilling the transferred planner, with
the model-free checkpoint's own Q nets. Fitted parts are cached beside the checkpoint (or in
the user's cache folder when that one is read-only, or the checkpoint is shipped with
mbiapo).
Everything is copied by state, never by sharing modules between agents.
"""

import copy
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from mbiapo import threads
from mbiapo.agent import Agent
from mbiapo.checkpoint import checkpoint_path, load_agent, read_checkpoint, shipped
from mbiapo.config import value_group
from mbiapo.datasets import dataset_file, read_for
from mbiapo.errors import MbiapoError
from mbiapo.evaluate import Episodes, play_and_summarize, summarize
from mbiapo.models.tanh_gaussian import TanhGaussian
from mbiapo.paths import can_write, temporary, user_cache, written
from mbiapo.planners import Planner
from mbiapo.planners.sequence import SequencePlanner
from mbiapo.replay import ReplayBuffer
from mbiapo.seeding import seed_everything
from mbiapo.value import ModelBasedEstimator


def _copy_parts(dst: Agent, src: Agent, parts: tuple[str, ...]) -> None:
    for name in parts:
        getattr(dst, name).load_state_dict(getattr(src, name).state_dict())
    if "q" in parts:
        dst.log_alpha.data.copy_(src.log_alpha.data)


def _describe(agent: Agent) -> str:
    return f"{agent.cfg.env.id} (observation/action sizes {agent.obs_dim}/{agent.act_dim})"


def from_checkpoint(mf: Agent, value_path: str | Path, device: str) -> Agent:
    """The model-free agent's planner with a model-based checkpoint's model, Q nets, rollout
    policy and temperature."""
    mb, _ = load_agent(value_path, device)
    if not isinstance(mb.estimator, ModelBasedEstimator):
        raise MbiapoError(f"{value_path}: --value needs a model-based checkpoint (trained with "
                          f"'mbiapo train --value model-based'), this one is model-free")
    if (mb.cfg.env.id, mb.obs_dim, mb.act_dim) != (mf.cfg.env.id, mf.obs_dim, mf.act_dim):
        raise MbiapoError(f"{value_path}: the value checkpoint was trained on {_describe(mb)}, "
                          f"the planner on {_describe(mf)}")
    cfg = copy.deepcopy(mf.cfg)
    cfg.value, cfg.train.gamma = mb.cfg.value, mb.cfg.train.gamma
    agent = Agent(cfg, mf.obs_dim, mf.act_dim)
    _copy_parts(agent, mf, ("planner",))
    _copy_parts(agent, mb, ("q", "q_target", "estimator"))
    return agent


def _cache_key(checkpoint: Path, data: Path, cfg, fit_steps: int, seed: int) -> str:
    digest = hashlib.sha256(checkpoint.read_bytes())
    stat = data.stat()
    digest.update(f"{data.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{fit_steps}:{seed}"
                  .encode())
    digest.update(OmegaConf.to_yaml(cfg.value).encode())
    return digest.hexdigest()[:12]


def with_estimator(agent: Agent, kind: str) -> Agent:
    """The agent (planner, Q nets, temperature) planning against value estimator ``kind``
    built afresh. Refused for an estimator with parameters of its own: nothing trained
    them (the model-based one is fitted instead: ``fitted``)."""
    cfg = copy.deepcopy(agent.cfg)
    cfg.value = value_group(kind, agent.cfg.value)
    other = Agent(cfg, agent.obs_dim, agent.act_dim)
    if any(True for _ in other.estimator.parameters()):
        raise MbiapoError(f"value estimator '{kind}' learns parameters of its own, which this "
                          f"checkpoint ('{agent.cfg.value.kind}') did not train: use a "
                          f"checkpoint trained with --value {kind}")
    _copy_parts(other, agent, ("planner", "q", "q_target"))
    return other


def fitted(mf: Agent, checkpoint: str | Path, data: str | Path | None, fit_steps: int,
           seed: int = 0) -> tuple[Agent, dict]:
    """The model-free agent (planner, Q nets, temperature) plus a world model and rollout
    policy fitted on ``data`` (a replay or dataset file, or a Minari folder; default: the
    replay.h5 saved beside the checkpoint). The fit is cached beside the checkpoint, or in
    ``paths.user_cache()`` where that folder is read-only."""
    checkpoint = checkpoint_path(checkpoint)
    if data is None:  # the replay beside it, or the dataset an offline run trained on
        data = checkpoint.parent / "replay.h5"
        if not data.is_file():
            data = Path(read_checkpoint(checkpoint).get("offline_dataset", data))
        if not data.exists():
            raise MbiapoError(f"{checkpoint}: no replay data beside it to fit a model on; pass "
                              f"--value MB.pt (a model-based checkpoint) or --data FILE.h5")
    file = dataset_file(data)
    cfg = copy.deepcopy(mf.cfg)
    cfg.value = value_group("model-based", mf.cfg.value)
    agent = Agent(cfg, mf.obs_dim, mf.act_dim)
    _copy_parts(agent, mf, ("planner", "q", "q_target"))
    name = f"{checkpoint.stem}.mb-{_cache_key(checkpoint, file, cfg, fit_steps, seed)}.pt"
    places = (user_cache(),) if shipped(checkpoint) else (checkpoint.parent, user_cache())
    cached = next((folder / name for folder in places if (folder / name).is_file()), None)
    if cached is not None:
        info = _load_fitted(agent, cached)
        return agent, {"value_source": f"fitted (cached {cached})", **info}
    folder = next((folder for folder in places if can_write(folder)), None)
    if folder is None:
        print(f"mbiapo: warning: the fitted model will not be cached (no permission to "
              f"write in {' or '.join(map(str, places))})", file=sys.stderr)
    buffer = ReplayBuffer.from_dataset(
        read_for(data, mf.cfg.env.id, mf.obs_dim, mf.act_dim, "the checkpoint"))
    info = fit(agent, mf, buffer, fit_steps, seed)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = temporary(folder / name)
        with written(folder / name, tmp):
            torch.save({"estimator": agent.estimator.state_dict(), "info": info}, tmp)
            os.replace(tmp, folder / name)
    return agent, {"value_source": f"fitted on {data}", **info}


def _load_fitted(agent: Agent, cache: Path) -> dict:
    """Load a cached fit into ``agent``; returns the fit's info."""
    try:
        state = torch.load(cache, map_location=agent.device, weights_only=True)
        agent.estimator.load_state_dict(state["estimator"])
        return state["info"]
    except Exception as e:  # torch.load raises many types on truncated files
        reason = " ".join(str(e).split())[:200]
        raise MbiapoError(f"{cache}: unreadable cache of a fitted model ({reason}); delete "
                          f"it to refit") from None


def fit(agent: Agent, mf: Agent, buffer: ReplayBuffer, steps: int, seed: int) -> dict:
    """``steps`` world-model updates on replay batches, each with a distillation step of the
    rollout policy towards the transferred planner (planning on the model-free objective)."""
    rng = np.random.default_rng(seed)
    seed_everything(seed)
    cfg, start = agent.cfg, time.perf_counter()
    for _ in tqdm(range(steps), desc="fitting model and rollout policy", file=sys.stderr,
                  mininterval=1.0, dynamic_ncols=True, leave=False):
        threads.refresh()
        batch = buffer.sample(cfg.train.batch_size, rng, agent.device)
        with torch.no_grad():
            objective = mf.objective(batch["obs"], cfg.value.beta_train,
                                     cfg.planner.train_samples)
            plan = mf.planner.plan(objective, batch["obs"], record=False)
        agent.estimator.update(batch, TanhGaussian(plan.mu, plan.log_std))
    seconds = round(time.perf_counter() - start, 2)
    return {"fit_steps": steps, "fit_seconds": seconds, "fit_transitions": len(buffer),
            **agent.estimator.evaluate(buffer.holdout(device=agent.device))}


def plan_model_based(mf: Agent, planner: Planner, checkpoint: str | Path, episodes: Episodes,
                     value: str | None = None, data: str | None = None, fit_steps: int = 3000,
                     name: str | None = None, overrides: list[str] = (),
                     compile: bool = False, device: str = "cpu") -> dict:
    """``mbiapo plan --model-based``: the model-free agent's ``planner`` (named ``name``;
    None: its own) plans against a model-based estimate, from the checkpoint ``value`` or
    fitted on ``data``. Returns plan's summary plus the same checkpoint's model-free
    returns (with the same planner, or for a sequence planner, which needs a model, with the
    checkpoint's own) and the ratio of the two."""
    if isinstance(mf.estimator, ModelBasedEstimator) and not (value or data):
        raise MbiapoError(f"{checkpoint} was trained model-based: plan with its own model "
                          f"without --model-based, or pass --value MB_CKPT or --data FILE.h5 "
                          f"to swap in another model")
    if value:
        agent, info = from_checkpoint(mf, value, device), {"value_source": value}
    else:
        agent, info = fitted(mf, checkpoint, data, fit_steps, episodes.seed)
    label = name or mf.cfg.planner.name
    print(f"planning with the {label} planner against the model-based value...", file=sys.stderr)
    result = play_and_summarize(agent, name, agent.planner_named(name, list(overrides)),
                                episodes, latency=True, compile=compile)
    # a sequence planner has no model-free form: the checkpoint's own planner is the baseline
    if isinstance(planner, SequencePlanner):
        planner, label = mf.act_planner, mf.cfg.train.act_planner or mf.cfg.planner.name
    print(f"model-free returns of the same checkpoint ({label}), for comparison...",
          file=sys.stderr)
    baseline = summarize(mf, label, episodes.play(mf, planner, False, record=False), False)
    return result | {"value": "model-based", **info, "model_free_planner": label,
                     "model_free_return_mean": baseline["return_mean"],
                     "model_free_return_std": baseline["return_std"],
                     "return_vs_model_free": result["return_mean"] / baseline["return_mean"]
                     if baseline["return_mean"] else float("nan")}
