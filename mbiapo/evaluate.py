"""Run a planner in the real environment: returns, and planning latency per action."""

import time

import numpy as np

from mbiapo.agent import Agent
from mbiapo.envs import make_env
from mbiapo.planners import Planner
from mbiapo.progress import EpisodeProgress


def run_episodes(agent: Agent, env_id: str, episodes: int, seed: int,
                 planner: Planner | None = None, iters: int | None = None,
                 batched: bool = True, deterministic: bool = True,
                 max_episode_steps: int | None = None) -> dict:
    """Play ``episodes`` episodes (seeds seed, seed+1, ...).

    ``batched``: all episodes run side by side and each step plans for all live episodes in
    one call (fast evaluation). Otherwise one episode at a time, planning at batch size 1,
    which is what ``latency_ms`` (per action) then measures. A progress bar over the steps
    goes to stderr.
    Returns {"returns": [...], "lengths": [...], "latency_ms": [...]}.
    """
    envs = [make_env(env_id, max_episode_steps) for _ in range(episodes)]
    limit = envs[0].spec.max_episode_steps or 0
    progress = EpisodeProgress(episodes, limit, f"{env_id} episodes")
    returns, lengths, latencies = np.zeros(episodes), np.zeros(episodes, int), []
    groups = [list(range(episodes))] if batched else [[i] for i in range(episodes)]
    for group in groups:
        obs = {i: envs[i].reset(seed=seed + i)[0] for i in group}
        live = list(group)
        while live:
            start = time.perf_counter()
            actions = agent.act(np.stack([obs[i] for i in live]), deterministic, planner, iters)
            latencies.append((time.perf_counter() - start) * 1e3 / len(live))
            still = []
            for i, action in zip(live, actions):
                obs[i], reward, terminated, truncated, _ = envs[i].step(action)
                returns[i] += reward
                lengths[i] += 1
                if terminated or truncated:
                    progress.episode_done(lengths[i])
                else:
                    still.append(i)
            progress.steps(len(live))
            live = still
    progress.close()
    for env in envs:
        env.close()
    return {"returns": returns.tolist(), "lengths": lengths.tolist(), "latency_ms": latencies}
