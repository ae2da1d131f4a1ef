"""Online training on a gymnasium task: one update per env step after uniform warm-up,
periodic evaluation to ``metrics.csv``, checkpoints (and replay) that resume exactly."""

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from mbiapo import run_folder
from mbiapo.agent import Agent
from mbiapo.checkpoint import check_env_matches, load_agent
from mbiapo.envs import env_dims, make_env
from mbiapo.errors import MbiapoError
from mbiapo.evaluate import run_episodes
from mbiapo.metrics_log import LOSSES, MetricsLog, summary_writer
from mbiapo.replay import ReplayBuffer

EVAL_SEED = 10_000  # evaluation episodes use seeds apart from training episodes


def episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


class Trainer:
    """State of one run folder: agent, replay, RNGs and counters."""

    keeps_replay = True  # online runs save their replay buffer beside the checkpoint

    def __init__(self, cfg: DictConfig, out: Path, agent: Agent | None = None):
        """A new run, or (``agent`` given) the frame a checkpointed agent resumes in."""
        self.cfg, self.out = cfg, out
        self.env = make_env(cfg.env.id, cfg.env.max_episode_steps)
        obs_dim, act_dim = env_dims(self.env)
        torch.manual_seed(cfg.train.seed)
        self.rng = np.random.default_rng(cfg.train.seed)
        self.agent = agent or Agent(cfg, obs_dim, act_dim)
        self.buffer = ReplayBuffer(obs_dim, act_dim, min(cfg.train.buffer_size, cfg.train.steps))
        self.step = self.episodes = self.updates = 0
        self.wall_s, self.since = 0.0, None  # seconds trained before this session; its start
        self.held = None  # the folder's lock (run_folder.lock), while this process trains
        self.evaluates = True  # offline runs without a known env cannot

    @classmethod
    def resume(cls, out: Path, steps: int | None) -> "Trainer":
        """The run in ``out``, continued to ``steps`` (default: its ``train.steps``). Every
        check runs before the folder is touched."""
        run_folder.check_resumable(out)
        held = run_folder.lock(out)
        agent, payload = load_agent(out / run_folder.CHECKPOINT)
        if agent.cfg.train.tensorboard:
            summary_writer()  # says how to install it, before the folder is touched
        before = copy.deepcopy(agent.cfg)
        agent.cfg.train.steps = run_folder.resume_target(out, payload["step"], steps,
                                                         before.train.steps)
        edits = run_folder.report_config_edits(out, before)
        if "offline_dataset" in payload:
            from mbiapo.offline import OfflineTrainer

            trainer = OfflineTrainer.resume_from(out, agent, payload)
        else:
            trainer = cls(agent.cfg, out, agent)
            check_env_matches(payload, *env_dims(trainer.env), agent.cfg.env.id)
        trainer.held = held
        run_folder.recover(out, payload["step"], online=trainer.keeps_replay)
        trainer.restore(payload)
        run_folder.update_config(out, before, agent.cfg)
        if edits:
            print(f"mbiapo: warning: {edits}", file=sys.stderr)
        return trainer

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
        run_folder.save(self.out, self.agent, self.state(), self.buffer if keep else None,
                        {"env_id": self.cfg.env.id, "source": "mbiapo train"})

    def state(self) -> dict:
        """Counters and RNG states for the checkpoint."""
        return {"step": self.step, "episodes": self.episodes, "updates": self.updates,
                "wall_s": self.wall(),
                "rng": {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state}}

    def wall(self) -> float:
        """Seconds spent training, over every session of the run (this one up to now)."""
        return self.wall_s + (time.perf_counter() - self.since if self.since else 0.0)

    def pretrain_model(self) -> None:
        """``value.model_pretrain`` model updates on the warm-up data (paper A.5)."""
        for _ in tqdm(range(self.cfg.value.model_pretrain), desc="model pre-training",
                      file=sys.stderr, leave=False, mininterval=1.0):
            self.agent.model_update(self.buffer.sample(self.cfg.train.batch_size, self.rng,
                                                       self.agent.device))

    def evaluate(self) -> np.ndarray | None:
        if not self.evaluates:
            return None
        result = run_episodes(self.agent, self.cfg.env.id, self.cfg.train.eval_episodes,
                              EVAL_SEED + self.cfg.train.seed,
                              max_episode_steps=self.cfg.env.max_episode_steps)
        return np.array(result["returns"])

    def run(self) -> dict:
        """Train until ``train.steps``; Ctrl-C saves a checkpoint and re-raises. Unlocks the
        folder at the end."""
        cfg, t = self.cfg, self.cfg.train
        if t.compile:
            self.agent.compile_value_gradient()
        log = MetricsLog(self.out, t.tensorboard, self.step)
        bar = tqdm(total=t.steps, initial=self.step, desc=f"{cfg.env.id} {cfg.planner.name}",
                   file=sys.stderr, mininterval=1.0, dynamic_ncols=True)
        self.since = time.perf_counter()
        try:
            last = self._loop(log, bar)
            bar.close()
            self.save()
        except KeyboardInterrupt:
            bar.close()
            self.save()
            raise
        finally:
            log.close()
            if self.held is not None:
                self.held.close()
        return last

    def _loop(self, log: MetricsLog, bar: tqdm) -> dict:
        t = self.cfg.train
        obs, _ = self.env.reset(seed=episode_seed(t.seed, self.episodes))
        ep_return, finished, last = 0.0, [], {}
        stats: list[dict] = []
        tick, tick_updates = time.perf_counter(), self.updates
        while self.step < t.steps:
            if self.step < t.warmup_steps:
                action = self.rng.uniform(-1.0, 1.0, self.agent.act_dim).astype(np.float32)
            else:
                action = self.agent.act(obs)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            self.buffer.add(obs, action, reward, next_obs, terminated, truncated)
            ep_return += reward
            obs = next_obs
            self.step += 1
            if terminated or truncated:
                finished.append(ep_return)
                self.episodes += 1
                ep_return = 0.0
                obs, _ = self.env.reset(seed=episode_seed(t.seed, self.episodes))
            if self.step == t.warmup_steps and self.agent.model is not None:
                self.pretrain_model()
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
            "updates_per_s": round(ups, 2),
            **{k: torch.stack([s[k] for s in stats]).mean().item()
               for k in LOSSES if stats and k in stats[0]},
            **self.agent.model_error(self.buffer.holdout(device=self.agent.device)),
        }
        log.write(row)
        if stats and not all(np.isfinite(v) for k, v in row.items() if k in LOSSES):
            raise MbiapoError(f"training diverged before step {self.step} (non-finite "
                              f"losses); the last checkpoint in {self.out} is kept")
        bar.set_postfix(upd_s=f"{ups:.1f}", **({} if returns is None else
                                                {"eval": f"{returns.mean():.1f}"}))
        return row


def start_run(cfg: DictConfig, out: Path) -> Trainer:
    """A new online run in ``out`` (checked before anything is built or written)."""
    run_folder.check_new_run(out)
    if cfg.train.tensorboard:
        summary_writer()  # says how to install it, before any work
    trainer = Trainer(cfg, out)
    trainer.held = run_folder.start(out, cfg)
    return trainer
