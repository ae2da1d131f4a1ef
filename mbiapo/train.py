"""Online training on a gymnasium task: one update per env step after uniform warm-up,
periodic evaluation to ``metrics.csv``, checkpoints (and replay) that resume exactly."""

import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mbiapo.agent import Agent
from mbiapo.checkpoint import check_env_matches, load_agent, save_checkpoint
from mbiapo.envs import env_dims, make_env
from mbiapo.errors import MbiapoError
from mbiapo.evaluate import run_episodes
from mbiapo.replay import ReplayBuffer

LOSSES = ("q_loss", "objective", "entropy", "alpha", "model_loss", "distill_kl")
METRICS = ("step", "episodes", "updates", "wall_s", "train_return", "eval_return_mean",
           "eval_return_std", "updates_per_s", *LOSSES, "model_error", "model_error_ratio")
EVAL_SEED = 10_000  # evaluation episodes use seeds apart from training episodes


def episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


class Trainer:
    """State of one run folder: agent, replay, RNGs and counters."""

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
        self.wall_s = 0.0
        self.evaluates = True  # offline runs without a known env cannot

    @classmethod
    def resume(cls, out: Path, steps: int | None) -> "Trainer":
        agent, payload = load_agent(out / "checkpoint.pt")
        if "offline_dataset" in payload:
            from mbiapo.offline import OfflineTrainer

            return OfflineTrainer.resume_from(out, agent, payload, steps)
        cfg = agent.cfg
        if steps is not None:
            cfg.train.steps = steps
        trainer = cls(cfg, out, agent)
        check_env_matches(payload, *env_dims(trainer.env), cfg.env.id)
        replay = out / "replay.h5"
        if not replay.is_file():
            raise MbiapoError(f"{out}: cannot resume, replay.h5 is missing (train.save_replay)")
        trainer.buffer = ReplayBuffer.load(replay, capacity=trainer.buffer.capacity)
        trainer.step, trainer.episodes = payload["step"], payload["episodes"]
        trainer.updates, trainer.wall_s = payload["updates"], payload["wall_s"]
        if len(trainer.buffer) != min(trainer.step, trainer.buffer.capacity):
            raise MbiapoError(f"{out}: replay.h5 holds {len(trainer.buffer)} transitions but "
                              f"the checkpoint is at step {trainer.step}")
        torch.set_rng_state(payload["rng"]["torch"])
        trainer.rng.bit_generator.state = payload["rng"]["numpy"]
        return trainer

    def save(self) -> None:
        if self.cfg.train.save_replay:
            self.buffer.save(self.out / "replay.h5", {"env_id": self.cfg.env.id,
                                                      "source": "mbiapo train"})
        save_checkpoint(self.out / "checkpoint.pt", self.agent, self.state())

    def state(self) -> dict:
        """Counters and RNG states for the checkpoint."""
        return {"step": self.step, "episodes": self.episodes, "updates": self.updates,
                "wall_s": self.wall_s,
                "rng": {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state}}

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
        """Train until ``train.steps``; Ctrl-C saves a checkpoint and re-raises."""
        cfg, t = self.cfg, self.cfg.train
        if t.compile:
            self.agent.compile_value_gradient()
        path = self.out / "metrics.csv"
        header = None
        if path.exists():  # keep the columns of a run started by an older mbiapo
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, header or METRICS, extrasaction="ignore")
            if header is None:
                writer.writeheader()
            bar = tqdm(total=t.steps, initial=self.step, desc=f"{cfg.env.id} {cfg.planner.name}",
                       file=sys.stderr, mininterval=1.0, dynamic_ncols=True)
            try:
                last = self._loop(writer, f, bar)
            except KeyboardInterrupt:
                bar.close()
                self.save()
                raise
            bar.close()
        self.save()
        return last

    def _loop(self, writer: csv.DictWriter, f, bar: tqdm) -> dict:
        t = self.cfg.train
        obs, _ = self.env.reset(seed=episode_seed(t.seed, self.episodes))
        ep_return, finished, last = 0.0, [], {}
        stats: list[dict] = []
        tick, tick_updates, start = time.perf_counter(), self.updates, time.perf_counter()
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
                now = time.perf_counter()
                ups = (self.updates - tick_updates) / (now - tick)
                self.wall_s += now - start
                start = now
                last = self.report(writer, f, bar, stats, finished, ups)
                finished, stats = [], []
                tick, tick_updates = time.perf_counter(), self.updates
                start = tick
            elif finished and self.step % 500 == 0:
                ups = (self.updates - tick_updates) / (time.perf_counter() - tick)
                bar.set_postfix(ret=f"{finished[-1]:.1f}", upd_s=f"{ups:.1f}")
            if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                self.save()
        self.wall_s += time.perf_counter() - start
        return last


    def report(self, writer: csv.DictWriter, f, bar: tqdm, stats: list[dict],
               finished: list[float], ups: float) -> dict:
        """Evaluate (when the env is known), write one metrics row and stop on divergence."""
        returns = self.evaluate()
        row = {
            "step": self.step, "episodes": self.episodes, "updates": self.updates,
            "wall_s": round(self.wall_s, 2),
            "train_return": np.mean(finished) if finished else "",
            "eval_return_mean": "" if returns is None else returns.mean(),
            "eval_return_std": "" if returns is None else returns.std(),
            "updates_per_s": round(ups, 2),
            **{k: torch.stack([s[k] for s in stats]).mean().item()
               for k in LOSSES if stats and k in stats[0]},
            **self.agent.model_error(self.buffer.holdout(device=self.agent.device)),
        }
        writer.writerow(row)
        f.flush()
        if stats and not all(np.isfinite(v) for k, v in row.items() if k in LOSSES):
            raise MbiapoError(f"training diverged before step {self.step} (non-finite "
                              f"losses); the last checkpoint in {self.out} is kept")
        bar.set_postfix(upd_s=f"{ups:.1f}", **({} if returns is None else
                                                {"eval": f"{returns.mean():.1f}"}))
        return row


def start_run(cfg: DictConfig, out: Path) -> Trainer:
    if (out / "checkpoint.pt").exists():
        raise MbiapoError(f"{out} already holds a run; continue it with "
                          f"'mbiapo train --resume {out}' or pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, out)
    OmegaConf.save(cfg, out / "config.yaml")
    return trainer
