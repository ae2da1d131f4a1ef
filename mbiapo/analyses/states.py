"""Saved states: on-policy states collected with a checkpoint's planner, in an HDF5 file
(``observations (N, S)`` float32; attributes format, format_version, env_id, obs_dim,
act_dim and how they were collected)."""

from pathlib import Path

import h5py
import numpy as np

from mbiapo.agent import Agent
from mbiapo.envs import make_env
from mbiapo.errors import MbiapoError
from mbiapo.evaluate import SIDE_BY_SIDE
from mbiapo.progress import bar
from mbiapo.seeding import seed_everything

FORMAT = "mbiapo-states"
FORMAT_VERSION = 1


def collect_states(agent: Agent, n: int, seed: int, episodes: int = 5,
                   deterministic: bool = False) -> np.ndarray:
    """n states (n, S) drawn uniformly from every state visited in ``episodes`` episodes
    (seeds seed, seed+1, ...) of the agent acting with its planner, run side by side; more
    episodes are played while fewer than n states were seen. At most ``SIDE_BY_SIDE``
    environments exist at once."""
    seed_everything(seed)
    cfg = agent.cfg.env
    pool, next_seed = [], seed
    progress = bar(n, "collecting states", "state")
    while next_seed - seed < episodes or sum(len(p) for p in pool) < n:
        played = next_seed - seed
        count = min(SIDE_BY_SIDE, episodes - played if played < episodes else episodes)
        envs = [make_env(cfg.id, cfg.max_episode_steps) for _ in range(count)]
        obs = [env.reset(seed=next_seed + i)[0] for i, env in enumerate(envs)]
        next_seed += count
        live = list(range(count))
        while live:
            batch = np.stack([obs[i] for i in live])
            pool.append(batch)
            progress.update(min(len(batch), n - progress.n))
            actions = agent.act(batch, deterministic)
            still = []
            for i, action in zip(live, actions):
                obs[i], _, terminated, truncated, _ = envs[i].step(action)
                if not (terminated or truncated):
                    still.append(i)
            live = still
        for env in envs:
            env.close()
    progress.close()
    states = np.concatenate(pool)
    pick = np.random.default_rng(seed).choice(len(states), n, replace=False)
    return states[np.sort(pick)].astype(np.float32)


def save_states(path: str | Path, states: np.ndarray, agent: Agent, info: dict) -> None:
    """Write atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("observations", data=states)
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION,
                        "env_id": agent.cfg.env.id, "obs_dim": agent.obs_dim,
                        "act_dim": agent.act_dim, **info})
    tmp.replace(path)


def load_states(path: str | Path, agent: Agent) -> np.ndarray:
    """The observations (N, S) of a states file written for the agent's environment; one
    clear MbiapoError for a missing, corrupt, foreign or mismatched file."""
    path = Path(path)
    if not path.is_file():
        raise MbiapoError(f"states file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if attrs.get("format") != FORMAT or "observations" not in f:
                raise MbiapoError(f"{path}: not an mbiapo states file (write one with "
                                  f"'mbiapo states')")
            states = f["observations"][()]
    except (OSError, KeyError, ValueError, RuntimeError) as e:  # h5py's ways to fail
        raise MbiapoError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0]})") from None
    if attrs.get("format_version", 0) > FORMAT_VERSION:
        raise MbiapoError(f"{path}: states format {attrs['format_version']} is newer than "
                          f"this mbiapo supports ({FORMAT_VERSION}); upgrade mbiapo")
    env_id = attrs.get("env_id")
    if env_id != agent.cfg.env.id:
        raise MbiapoError(f"{path}: states are from {env_id}, the checkpoint was trained on "
                          f"{agent.cfg.env.id}")
    if states.ndim != 2 or states.shape[1] != agent.obs_dim or len(states) == 0:
        raise MbiapoError(f"{path}: observations have shape {states.shape}, expected "
                          f"(N >= 1, {agent.obs_dim})")
    if not np.isfinite(states).all():
        raise MbiapoError(f"{path}: observations contain NaN or inf")
    return states.astype(np.float32)
