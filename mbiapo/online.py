"""Online training on a gymnasium task: one update per env step after uniform warm-up,
periodic evaluation, checkpoints (and replay) that resume exactly."""

import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from mbiapo import threads
from mbiapo.agent import Agent
from mbiapo.envs import env_dims, make_env
from mbiapo.metrics_log import MetricsLog
from mbiapo.replay import ReplayBuffer
from mbiapo.trainer import Trainer


def episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


class OnlineTrainer(Trainer):
    keeps_replay = True

    def __init__(self, cfg: DictConfig, out: Path, agent: Agent | None = None):
        """A new run, or (``agent`` given) the frame a checkpointed agent resumes in."""
        self.env = make_env(cfg.env.id, cfg.env.max_episode_steps)
        obs_dim, act_dim = env_dims(self.env)
        super().__init__(cfg, out, obs_dim, act_dim, agent)
        self.buffer = ReplayBuffer(obs_dim, act_dim, min(cfg.train.buffer_size, cfg.train.steps))

    def _loop(self, log: MetricsLog, bar: tqdm) -> dict:
        t = self.cfg.train
        obs, _ = self.env.reset(seed=episode_seed(t.seed, self.episodes))
        ep_return, finished, last, init = 0.0, [], {}, None
        stats: list[dict] = []
        tick, tick_updates = time.perf_counter(), self.updates
        while self.step < t.steps:
            threads.refresh()
            if self.step < t.warmup_steps:
                action = self.rng.uniform(-1.0, 1.0, self.agent.act_dim).astype(np.float32)
            else:
                action, plan = self.agent.act_planned(obs, init=init)
                init = plan.next_init  # a sequence planner's warm start for the next step
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            self.buffer.add(obs, action, reward, next_obs, terminated, truncated)
            ep_return += reward
            obs = next_obs
            self.step += 1
            if terminated or truncated:
                finished.append(ep_return)
                self.episodes += 1
                ep_return, init = 0.0, None
                obs, _ = self.env.reset(seed=episode_seed(t.seed, self.episodes))
            if self.step == t.warmup_steps:
                self.pretrain()
            if self.step >= t.warmup_steps:
                for _ in range(t.updates_per_step):
                    batch = self.buffer.sample(t.batch_size, self.rng, self.agent.device)
                    stats.append(self.agent.update(batch))
                    self.updates += 1
            bar.update(1)
            if self.step % t.eval_every == 0 or self.step == t.steps:
                ups = (self.updates - tick_updates) / (time.perf_counter() - tick)
                last = self.report(log, bar, stats, finished, ups)
                finished, stats = [], []
                tick, tick_updates = time.perf_counter(), self.updates
            elif finished and self.step % 500 == 0:
                ups = (self.updates - tick_updates) / (time.perf_counter() - tick)
                bar.set_postfix(ret=f"{finished[-1]:.1f}", upd_s=f"{ups:.1f}")
            if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                self.save()
        return last
