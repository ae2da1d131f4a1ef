"""The frame every training run shares, online or offline: agent, replay, RNGs, counters,
the metrics log and the run folder's saves. ``OnlineTrainer`` (online.py) and
``OfflineTrainer`` (offline.py) add where transitions come from (``_loop``); train.py starts
and resumes them."""

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from mbiapo import run_folder, threads
from mbiapo.agent import Agent
from mbiapo.errors import MbiapoError
from mbiapo.evaluate import run_episodes
from mbiapo.metrics_log import MetricsLog
from mbiapo.replay import ReplayBuffer
from mbiapo.seeding import seed_everything

EVAL_SEED = 10_000  # evaluation episodes use seeds apart from training episodes


class _Stopped(Exception):
    """A ``run`` callback asked to stop after ``row``."""

    def __init__(self, row: dict):
        super().__init__()
        self.row = row


class Trainer:
    """State of one run folder. Subclasses set ``buffer`` and define ``_loop``."""

    keeps_replay = False  # whether the replay buffer is saved beside the checkpoint
    buffer: ReplayBuffer

    def __init__(self, cfg: DictConfig, out: Path, obs_dim: int, act_dim: int,
                 agent: Agent | None = None):
        """Seeds Python, numpy and torch (``seed_everything``) and its own generator from
        ``train.seed``, then builds the agent (or takes the one
        a checkpoint rebuilt: ``agent``)."""
        self.cfg, self.out = cfg, out
        seed_everything(cfg.train.seed)
        self.rng = np.random.default_rng(cfg.train.seed)
        self.agent = agent or Agent(cfg, obs_dim, act_dim)
        self.step = self.episodes = self.updates = 0
        self.wall_s, self.since = 0.0, None  # seconds trained before this session; its start
        self.held = None  # the folder's lock (run_folder.lock), while this process trains
        self.callback = None  # run's callback(row)
        self.saved_step = None  # the step of the last checkpoint this process wrote
        self.agent.check_planner_trains()  # before a new run's folder is made
        self.evaluates = True  # offline runs without a known env cannot

    def restore(self, payload: dict) -> None:
        """Counters, RNG states and (online runs) the replay buffer of a checkpoint."""
        self.step, self.episodes = payload["step"], payload["episodes"]
        self.updates, self.wall_s = payload["updates"], payload["wall_s"]
        torch.set_rng_state(payload["rng"]["torch"])
        self.rng.bit_generator.state = payload["rng"]["numpy"]
        if self.keeps_replay:
            self.buffer = ReplayBuffer.load(self.out / run_folder.REPLAY,
                                            capacity=self.buffer.capacity)
            if len(self.buffer) != min(self.step, self.buffer.capacity):
                raise MbiapoError(f"{self.out}: replay.h5 holds {len(self.buffer)} transitions "
                                  f"but the checkpoint is at step {self.step}")

    def save(self) -> None:
        """Commit the checkpoint and (``train.save_replay``) the replay buffer together."""
        keep = self.keeps_replay and self.cfg.train.save_replay
        try:
            run_folder.save(self.out, self.agent, self.state(), self.buffer if keep else None,
                            {"env_id": self.cfg.env.id, "source": "mbiapo train"})
        except KeyboardInterrupt:  # raised once the save is done (run_folder defers it)
            self.saved_step = self.step
            raise
        self.saved_step = self.step

    def state(self) -> dict:
        """Counters and RNG states for the checkpoint."""
        return {"step": self.step, "episodes": self.episodes, "updates": self.updates,
                "wall_s": self.wall(),
                "rng": {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state}}

    def wall(self) -> float:
        """Seconds spent training, over every session of the run (this one up to now)."""
        return self.wall_s + (time.perf_counter() - self.since if self.since else 0.0)

    def pretrain(self) -> None:
        """The value estimator's pre-training updates on the data so far (model-based: the
        world model's ``value.model_pretrain``, paper A.5; model-free: none)."""
        estimator = self.agent.estimator
        for _ in tqdm(range(estimator.pretrain_updates), desc="value estimator pre-training",
                      file=sys.stderr, leave=False, mininterval=1.0):
            threads.refresh()
            estimator.update(self.buffer.sample(self.cfg.train.batch_size, self.rng,
                                                self.agent.device))

    def evaluate(self) -> np.ndarray | None:
        if not self.evaluates:
            return None
        result = run_episodes(self.agent, self.cfg.env.id, self.cfg.train.eval_episodes,
                              EVAL_SEED + self.cfg.train.seed,
                              max_episode_steps=self.cfg.env.max_episode_steps)
        return np.array(result["returns"])

    def run(self, threads_setting: str | int | None = None,
            callback: Callable[[dict], bool | None] | None = None) -> dict:
        """Train until ``train.steps`` with ``threads_setting`` (default ``train.threads``;
        see mbiapo/threads.py); Ctrl-C saves a checkpoint and re-raises. ``callback(row)``
        sees every metrics row as it is written; returning False stops the run there (saved,
        resumable). Unlocks the folder at the end; returns the last metrics row."""
        cfg, t = self.cfg, self.cfg.train
        threads.use(threads_setting or t.threads)
        if t.compile:
            self.agent.compile_value_gradient()
        self.callback = callback
        log = MetricsLog(self.out, t.tensorboard, self.step)
        bar = tqdm(total=t.steps, initial=self.step, desc=f"{cfg.env.id} {cfg.planner.name}",
                   file=sys.stderr, mininterval=1.0, dynamic_ncols=True)
        self.since = time.perf_counter()
        try:
            try:
                last = self._loop(log, bar)
            except _Stopped as stopped:
                last = stopped.row
            bar.close()
            self.save()
        except KeyboardInterrupt:
            bar.close()
            if self.saved_step != self.step:  # not if Ctrl-C came during a save, after it
                self.save()
            raise
        finally:
            log.close()
            if self.held is not None:
                self.held.close()
        return last

    def _loop(self, log: MetricsLog, bar: tqdm) -> dict:
        """Train from ``self.step`` to ``train.steps``, calling ``report`` at evaluation steps
        and ``save`` at checkpoint steps; returns the last metrics row."""
        raise NotImplementedError

    def report(self, log: MetricsLog, bar: tqdm, stats: list[dict], finished: list[float],
               ups: float) -> dict:
        """Evaluate (when the env is known), write one metrics row and stop on divergence."""
        returns = self.evaluate()
        row = {
            "step": self.step, "episodes": self.episodes, "updates": self.updates,
            "wall_s": round(self.wall(), 2),
            "train_return": np.mean(finished) if finished else "",
            "eval_return_mean": "" if returns is None else returns.mean(),
            "eval_return_std": "" if returns is None else returns.std(),
            "updates_per_s": round(ups, 2), "threads": threads.refresh(),
            **{k: torch.stack([s[k] for s in stats]).mean().item()
               for k in (stats[0] if stats else ())},
            **self.agent.estimator.evaluate(self.buffer.holdout(device=self.agent.device)),
        }
        log.write(row)
        if self.callback is not None and self.callback(row) is False:
            raise _Stopped(row)
        if stats and not all(np.isfinite(row[k]) for k in stats[0]):
            raise MbiapoError(f"training diverged before step {self.step} (non-finite "
                              f"losses); the last checkpoint in {self.out} is kept")
        bar.set_postfix(upd_s=f"{ups:.1f}", **({} if returns is None else
                                                {"eval": f"{returns.mean():.1f}"}))
        return row
