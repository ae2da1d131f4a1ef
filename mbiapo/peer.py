"""A peer in the same sweep: stable-baselines3's SAC, trained with the run config's budget and
settings and evaluated by mbiapo's protocol, so that ``mbiapo report`` sets it beside
mbiapo's planners ("is the baseline right?").

What is matched, from the composed config (the default planner's, whose network sizes the
policy takes):

- budget: ``train.steps`` env steps, the first ``train.warmup_steps`` uniform in [-1, 1]
  (the actions mbiapo's agent sees; SB3's ``learning_starts``), then ``updates_per_step``
  gradient steps per env step (``train_freq=1``);
- settings: lr, batch, γ, τ, buffer, initial α and its target entropy (−|A|), the policy's
  width and depth (``planner.hidden``/``layers``), the critics' (``value.hidden``/``layers``,
  ``value.members`` of them), ReLU;
- evaluation: every ``train.eval_every`` steps, ``train.eval_episodes`` deterministic
  episodes on the seeds mbiapo's trainer uses (``EVAL_SEED + train.seed + i``);
- output: ``config.yaml`` (the config, ``planner.name: sb3-sac``) and ``metrics.csv`` with
  mbiapo's columns (step, episodes, updates, wall_s, train_return, eval_return_mean,
  eval_return_std, updates_per_s, threads).

Not matched: SB3 updates once per step from step ``learning_starts`` on and keeps its own
episode seeds. A run is not resumable: a peer run that stopped before its end starts over
in the same folder.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mbiapo import threads
from mbiapo.envs import make_env
from mbiapo.errors import MbiapoError
from mbiapo.metrics_log import MetricsLog
from mbiapo.trainer import EVAL_SEED

NAME = "sb3-sac"
MISSING = ("the sb3-sac peer needs stable-baselines3: pip install 'mbiapo[peer]' (or pip "
           "install stable-baselines3)")
PEER_FILES = ("config.yaml", "metrics.csv")
LEFT_BY_SWEEPS = ("train.log",)  # a sweep logs each run there


def available() -> bool:
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        return False
    return True


def evaluate(predict, cfg: DictConfig) -> np.ndarray:
    """Returns (episodes,) of deterministic ``predict(obs) -> action`` on the evaluation
    seeds of mbiapo's trainer."""
    returns = []
    for i in range(cfg.train.eval_episodes):
        env = make_env(cfg.env.id, cfg.env.max_episode_steps)
        obs, _ = env.reset(seed=EVAL_SEED + cfg.train.seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(predict(obs))
            total += float(reward)
            done = terminated or truncated
        env.close()
        returns.append(total)
    return np.array(returns)


def finished(out: Path, steps: int) -> bool:
    """Whether ``out`` holds a peer run whose metrics reached ``steps``."""
    from mbiapo.report import read_rows

    if not (out / "metrics.csv").is_file():
        return False
    rows = read_rows(out)
    return bool(rows) and (rows[-1]["step"] or 0) >= steps


def train(cfg: DictConfig, out: Path) -> dict:
    """Train SB3's SAC as the module docstring says, writing ``out``; returns the last
    metrics row. A folder holding another run, or files it did not write, is refused."""
    if not available():
        raise MbiapoError(MISSING)
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    _prepare(out, cfg)
    t = cfg.train
    threads.use(t.threads)
    env = make_env(cfg.env.id, cfg.env.max_episode_steps)
    model = SAC("MlpPolicy", env, learning_rate=t.lr, buffer_size=min(t.buffer_size, t.steps),
                learning_starts=t.warmup_steps, batch_size=t.batch_size, tau=t.tau,
                gamma=t.gamma, train_freq=1, gradient_steps=t.updates_per_step,
                ent_coef=f"auto_{t.init_alpha}",
                target_entropy="auto" if t.target_entropy is None else t.target_entropy,
                policy_kwargs={"net_arch": {"pi": [cfg.planner.hidden] * cfg.planner.layers,
                                            "qf": [cfg.value.hidden] * cfg.value.layers},
                               "n_critics": cfg.value.members,
                               "activation_fn": torch.nn.ReLU},
                seed=t.seed, device=t.device, verbose=0)
    log = MetricsLog(out, False)
    start = time.perf_counter()

    class Evaluation(BaseCallback):
        """Every ``eval_every`` steps: evaluate and write one metrics row."""

        def __init__(self):
            super().__init__()
            self.finished, self.episodes, self.last = [], 0, {}
            self.tick, self.tick_updates, self.eval_s = time.perf_counter(), 0, 0.0

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    self.finished.append(info["episode"]["r"])
                    self.episodes += 1
            step = self.num_timesteps
            if step % t.eval_every and step != t.steps:
                return True
            updates = int(model._n_updates)
            ups = (updates - self.tick_updates) / (time.perf_counter() - self.tick)
            began = time.perf_counter()
            returns = evaluate(lambda obs: model.predict(obs, deterministic=True)[0], cfg)
            self.eval_s += time.perf_counter() - began
            self.last = {"step": step, "episodes": self.episodes, "updates": updates,
                         "wall_s": round(time.perf_counter() - start - self.eval_s, 2),
                         "train_return": np.mean(self.finished) if self.finished else "",
                         "eval_return_mean": returns.mean(), "eval_return_std": returns.std(),
                         "updates_per_s": round(ups, 2), "threads": threads.refresh()}
            log.write(self.last)
            print(f"{cfg.env.id} {NAME} step {step}: eval {returns.mean():.1f}",
                  file=sys.stderr)
            self.finished, self.tick, self.tick_updates = [], time.perf_counter(), updates
            return True

    callback = Evaluation()
    try:
        model.learn(total_timesteps=t.steps, callback=callback)
    finally:
        log.close()
        env.close()
    return callback.last


def _prepare(out: Path, cfg: DictConfig) -> None:
    """A new folder, or one holding an unfinished peer run of this config (started over)."""
    from mbiapo.config import differences, load_yaml

    out.mkdir(parents=True, exist_ok=True)
    present = sorted(p.name for p in out.iterdir())
    foreign = [name for name in present if name not in PEER_FILES + LEFT_BY_SWEEPS
               and not name.startswith("unfinished-")]
    if foreign:
        raise MbiapoError(f"--out {out} is not empty ({', '.join(foreign[:3])}); pick "
                          f"another folder")
    if "config.yaml" in present:
        changed = differences(load_yaml(out / "config.yaml"), cfg,
                              ignore=("train.steps", "planner.name"))
        if changed:
            raise MbiapoError(f"{out} holds a peer run with another config ({changed[0][0]}); "
                              f"pick another --out")
        (out / "metrics.csv").unlink(missing_ok=True)
    config = OmegaConf.to_container(cfg)
    config["planner"]["name"] = NAME
    (out / "config.yaml").write_text(OmegaConf.to_yaml(config))
