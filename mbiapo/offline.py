"""Offline training: the same agent update on batches of a fixed dataset, never stepping the
environment except to evaluate (when the env is known). ``train.steps`` counts updates."""

import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from mbiapo import threads
from mbiapo.agent import Agent
from mbiapo.datasets import Dataset, fit_to_env, read_dataset, read_for
from mbiapo.envs import NO_ENV
from mbiapo.errors import MbiapoError
from mbiapo.replay import ReplayBuffer
from mbiapo.trainer import Trainer


class OfflineTrainer(Trainer):
    keeps_replay = False  # the dataset is the replay; the checkpoint names its file

    def __init__(self, cfg: DictConfig, out: Path, data: Dataset, agent: Agent | None = None):
        """A new offline run on a validated dataset whose actions are in [-1, 1] (or,
        ``agent`` given, the frame a checkpointed run resumes in). The checkpoint names the
        dataset's file by its absolute path, so the run resumes from any directory."""
        self.dataset = data.path.resolve()
        self.buffer = ReplayBuffer.from_dataset(data)
        super().__init__(cfg, out, data.obs_dim, data.act_dim, agent)
        self.evaluates = cfg.env.id != NO_ENV

    @classmethod
    def resume_from(cls, out: Path, agent: Agent, payload: dict) -> "OfflineTrainer":
        """The frame a checkpointed offline run resumes in (``train.resume_run`` restores
        it), on its dataset, read and checked again."""
        env_id = None if agent.cfg.env.id == NO_ENV else agent.cfg.env.id
        data = read_for(payload["offline_dataset"], env_id, agent.obs_dim, agent.act_dim,
                        f"the run in {out}")
        return cls(agent.cfg, out, data, agent)

    def state(self) -> dict:
        return {**super().state(), "offline_dataset": str(self.dataset)}

    def _loop(self, log, bar) -> dict:
        t = self.cfg.train
        if self.step == 0:
            self.pretrain()
        stats, last = [], {}
        tick, tick_updates = time.perf_counter(), self.updates
        while self.step < t.steps:
            threads.refresh()
            batch = self.buffer.sample(t.batch_size, self.rng, self.agent.device)
            stats.append(self.agent.update(batch))
            self.step += 1
            self.updates += 1
            bar.update(1)
            if self.step % t.eval_every == 0 or self.step == t.steps:
                last = self.report(log, bar, stats, [], (self.updates - tick_updates)
                                   / (time.perf_counter() - tick))
                stats, tick, tick_updates = [], time.perf_counter(), self.updates
            if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                self.save()
        return last


def prepare(dataset: Path, env: str | None) -> tuple[str, Dataset]:
    """Read and validate the dataset once. The env to evaluate on is --env, else the
    dataset's, else NO_ENV (said on stderr); its sizes and action space must fit the data."""
    data = read_dataset(dataset)
    if env and data.env_id and env != data.env_id:
        raise MbiapoError(f"{dataset}: recorded on {data.env_id}, but --env is {env}")
    env = env or data.env_id
    if env is None:
        print(f"mbiapo: {dataset} names no environment and no --env was given: training "
              f"without evaluation", file=sys.stderr)
    fit_to_env(data, env, env)
    for name, dtype in data.converted.items():
        print(f"mbiapo: {dataset}: '{name}' stored as {dtype}, read as float32", file=sys.stderr)
    return env or NO_ENV, data
