"""Dataset collection and inspection: ``mbiapo collect`` and ``mbiapo dataset info``."""

from pathlib import Path

import numpy as np

from mbiapo.agent import Agent
from mbiapo.datasets import FIELDS, Dataset, fit_to_env, write_d4rl
from mbiapo.envs import action_bounds, make_env
from mbiapo.evaluate import SIDE_BY_SIDE
from mbiapo.paths import temporary, written
from mbiapo.planners import Planner
from mbiapo.progress import EpisodeProgress
from mbiapo.seeding import seed_everything


def collect(agent: Agent | None, env_id: str, episodes: int, seed: int,
            planner: Planner | None = None, noise: float = 0.0,
            max_episode_steps: int | None = None) -> dict[str, np.ndarray]:
    """Play ``episodes`` episodes (seeds seed, seed+1, ...), up to ``SIDE_BY_SIDE`` at once,
    with the agent's planner acting by tanh(mu) plus Gaussian noise of std ``noise`` (in
    [-1, 1] units, clipped), or uniformly at random when ``agent`` is None. Returns the D4RL
    arrays in episode order with actions in the environment's own units."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    progress, flat = None, []
    for start in range(0, episodes, SIDE_BY_SIDE):
        group = range(start, min(start + SIDE_BY_SIDE, episodes))
        envs = {i: make_env(env_id, max_episode_steps) for i in group}
        if progress is None:
            limit = envs[start].spec.max_episode_steps or 0
            progress = EpisodeProgress(episodes, limit, f"collecting {env_id}")
        flat += _play_group(agent, envs, seed, planner, noise, rng, progress)
    progress.close()
    arrays = {name: np.asarray(column, dtype) for name, column, dtype in zip(
        FIELDS, zip(*flat), (np.float32, np.float32, np.float32, np.float32, bool, bool))}
    low, high = action_bounds(env_id)
    arrays["actions"] = (low + (arrays["actions"] + 1) / 2 * (high - low)).astype(np.float32)
    return arrays


def _play_group(agent: Agent | None, envs: dict, seed: int, planner: Planner | None,
                noise: float, rng: np.random.Generator, progress: EpisodeProgress) -> list:
    """The transitions (obs, action, reward, next_obs, terminated, truncated) of the
    episodes ``envs`` ({episode: env}) play side by side, in episode order; closes them."""
    rows = {i: [] for i in envs}
    obs = {i: env.reset(seed=seed + i)[0] for i, env in envs.items()}
    act_dim = next(iter(envs.values())).action_space.shape[0]
    live = list(envs)
    while live:
        if agent is None:
            actions = rng.uniform(-1, 1, (len(live), act_dim))
        else:
            actions = agent.act(np.stack([obs[i] for i in live]), True, planner)
            actions = np.clip(actions + noise * rng.standard_normal(actions.shape), -1, 1)
        still = []
        for i, action in zip(live, actions.astype(np.float32)):
            next_obs, reward, terminated, truncated, _ = envs[i].step(action)
            rows[i].append((obs[i], action, reward, next_obs, terminated, truncated))
            obs[i] = next_obs
            if terminated or truncated:
                progress.episode_done(len(rows[i]))
            else:
                still.append(i)
        progress.steps(len(live))
        live = still
    for env in envs.values():
        env.close()
    return [row for i in envs for row in rows[i]]


def collect_dataset(path: Path, agent: Agent | None, env_id: str, episodes: int, seed: int,
                    planner: Planner | None, noise: float, max_episode_steps: int | None,
                    policy: str) -> dict:
    """``mbiapo collect``: play the episodes (as ``collect``) and write them to ``path`` in
    the D4RL layout, with ``policy`` (a description) and the settings in its metadata.
    Returns what the command prints: file, env, policy, transitions, episodes, mean return.
    A write that fails (a full disk) or is interrupted leaves no temporary file."""
    arrays = collect(agent, env_id, episodes, seed, planner, noise, max_episode_steps)
    low, high = action_bounds(env_id)
    with written(path, temporary(path)):  # write_d4rl's temporary file
        write_d4rl(path, arrays, {
            "env_id": env_id, "source": "mbiapo collect", "policy": policy, "seed": seed,
            "noise": noise, "episodes": episodes, "actions": "env units",
            "obs_dim": arrays["observations"].shape[1], "act_dim": arrays["actions"].shape[1],
            "action_low": low, "action_high": high})
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    returns = [r.sum() for r in np.split(arrays["rewards"], ends[:-1] + 1)]
    return {"out": str(path), "env": env_id, "policy": policy,
            "transitions": len(arrays["rewards"]), "episodes": episodes,
            "return_mean": float(sum(returns) / len(returns))}


def describe(data: Dataset) -> dict:
    """What ``mbiapo dataset info`` prints: layout, sizes, episode returns, ends, env id and
    the validation against the env's action space (when the env is known)."""
    returns = data.returns
    a = data.arrays
    info = {"path": str(data.path), "layout": data.layout, "env_id": data.env_id,
            "transitions": len(data), "episodes": len(returns),
            "obs_dim": data.obs_dim, "act_dim": data.act_dim,
            "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "return_min": float(returns.min()), "return_max": float(returns.max()),
            "terminations": int(a["terminals"].sum()), "truncations": int(a["timeouts"].sum()),
            "actions": "normalized [-1, 1]" if data.actions_normalized else "env units",
            "next_observations": "rebuilt from observations" if data.reconstructed_next
            else "stored", "dropped_rows": data.dropped,
            "converted": ", ".join(f"{name} {dtype} -> float32"
                                   for name, dtype in data.converted.items()) or "none"}
    fit_to_env(data, data.env_id, data.env_id or "")
    info["validation"] = (f"ok against {data.env_id}" if data.env_id else
                          "ok (no environment recorded: actions checked against [-1, 1])")
    return info
