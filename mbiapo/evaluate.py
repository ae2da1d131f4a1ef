"""Run a planner in the real environment: returns, and planning latency per action."""

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbiapo.agent import Agent
from mbiapo.envs import make_env
from mbiapo.planners import Planner
from mbiapo.progress import EpisodeProgress
from mbiapo.seeding import seeded
from mbiapo.video import EpisodeVideo

SIDE_BY_SIDE = 64
"""The most episodes played (and environments alive) at once."""


def run_episodes(agent: Agent, env_id: str, episodes: int, seed: int,
                 planner: Planner | None = None, iters: int | None = None,
                 batched: bool = True, deterministic: bool = True,
                 max_episode_steps: int | None = None, video: Path | None = None) -> dict:
    """Play ``episodes`` episodes (seeds seed, seed+1, ...) with every generator seeded from
    ``seed`` (``seeding.seeded``: the planners' own samples repeat too, and the caller's
    generators are left as they were).

    Each step's plan warm-starts the next step of the same episodes (``Plan.next_init``,
    sequence planners); a new episode starts clean. Where the agent plans through the
    simulator (``mbiapo.true_model``), it is synced to the live episodes before each step.

    ``batched``: up to ``SIDE_BY_SIDE`` episodes run side by side (the environments of one
    group at a time exist) and each step plans for all their live episodes in one call
    (fast evaluation). Otherwise one episode at a time, planning at batch size 1,
    which is what ``latency_ms`` (per action) then measures. A progress bar over the steps
    goes to stderr.
    With ``video`` (a folder), episode i is also recorded to ``video/episode-<seed+i>.mp4``
    (or .gif, see ``video.EpisodeVideo``), one episode at a time.
    Returns {"returns": [...], "lengths": [...], "latency_ms": [...]} (+ "videos": [...]).
    """
    with seeded(seed):
        return _play(agent, env_id, episodes, seed, planner, iters, batched and video is None,
                     deterministic, max_episode_steps, video)


def _play(agent: Agent, env_id: str, episodes: int, seed: int, planner: Planner | None,
          iters: int | None, batched: bool, deterministic: bool,
          max_episode_steps: int | None, video: Path | None) -> dict:
    size = SIDE_BY_SIDE if batched else 1
    groups = (range(start, min(start + size, episodes)) for start in range(0, episodes, size))
    videos: dict[int, EpisodeVideo] = {}
    files = []
    progress = None
    returns, lengths, latencies = [], [], []
    for group in groups:
        envs = {i: make_env(env_id, max_episode_steps, video is not None) for i in group}
        if progress is None:
            limit = envs[group[0]].spec.max_episode_steps or 0
            progress = EpisodeProgress(episodes, limit, f"{env_id} episodes")
            fps = envs[group[0]].metadata.get("render_fps", 30)
        obs = {i: envs[i].reset(seed=seed + i)[0] for i in group}
        gained, steps = dict.fromkeys(group, 0.0), dict.fromkeys(group, 0)
        if video is not None:
            for i in group:
                videos[i] = EpisodeVideo(video / f"episode-{seed + i}", fps)
                videos[i].add(envs[i].render())
        live, init = list(group), None
        while live:
            start = time.perf_counter()
            if agent.dynamics is not None:
                agent.dynamics.sync([envs[i] for i in live])
            actions, plan = agent.act_planned(np.stack([obs[i] for i in live]), deterministic,
                                              planner, iters, init)
            latencies.append((time.perf_counter() - start) * 1e3 / len(live))
            still = []
            for i, action in zip(live, actions):
                obs[i], reward, terminated, truncated, _ = envs[i].step(action)
                gained[i] += float(reward)
                steps[i] += 1
                if i in videos:
                    videos[i].add(envs[i].render())
                if terminated or truncated:
                    progress.episode_done(steps[i])
                    if i in videos:
                        files.append(str(videos.pop(i).close()))
                else:
                    still.append(i)
            progress.steps(len(live))
            if plan.next_init is not None:
                rows = [j for j, i in enumerate(live) if i in still]
                init = tuple(x[rows] for x in plan.next_init)
            live = still
        for env in envs.values():
            env.close()
        returns += gained.values()
        lengths += steps.values()
    if progress is not None:
        progress.close()
    result = {"returns": returns, "lengths": lengths, "latency_ms": latencies}
    return result | ({"videos": files} if video is not None else {})


@dataclass
class Episodes:
    """How a command plays: ``count`` episodes (seeds seed, seed+1, ...), the planner's
    iterations per action (None: its own) and a folder to record them to (None: none)."""

    count: int
    seed: int = 0
    iters: int | None = None
    video: Path | None = None

    def play(self, agent: Agent, planner: Planner, latency: bool, record: bool = True) -> dict:
        """``run_episodes`` on the agent's env: one state at a time with ``latency`` (what
        planning latency per action measures), else side by side."""
        video = self.video if record else None
        if video:
            video.mkdir(parents=True, exist_ok=True)
        return run_episodes(agent, agent.cfg.env.id, self.count, self.seed, planner, self.iters,
                            batched=not latency, video=video,
                            max_episode_steps=agent.cfg.env.max_episode_steps)


def summarize(agent: Agent, planner_name: str, result: dict, latency: bool) -> dict:
    """What evaluate and plan print: returns (mean, std, each), lengths, videos and, with
    ``latency``, planning latency per action (mean, p95)."""
    returns = np.array(result["returns"])
    out = {"env": agent.cfg.env.id, "planner": planner_name, "episodes": len(returns),
           "return_mean": float(returns.mean()), "return_std": float(returns.std()),
           "returns": [round(r, 3) for r in result["returns"]], "lengths": result["lengths"],
           **({"videos": result["videos"]} if "videos" in result else {})}
    if latency:
        lat = np.array(result["latency_ms"])
        out |= {"latency_ms_mean": float(lat.mean()), "latency_ms_p95":
                float(np.percentile(lat, 95)), "actions": int(lat.size)}
    return out


def compile_for_acting(agent: Agent, planner: Planner) -> dict:
    """Compile the agent's value gradient (and H-step score) and warm it up on one action,
    so that latencies are the compiled ones; returns the seconds it took. Planning through
    the simulator needs a live episode, so there the first action compiles."""
    print("compiling the value gradient (first action)...", file=sys.stderr)
    start = time.perf_counter()
    agent.compile_value_gradient()
    if agent.dynamics is None or agent.dynamics.differentiable:
        agent.act(np.zeros(agent.obs_dim, np.float32), planner=planner)
    return {"compile_seconds": round(time.perf_counter() - start, 2)}


def play_and_summarize(agent: Agent, name: str | None, planner: Planner, episodes: Episodes,
                       latency: bool, compile: bool = False) -> dict:
    """evaluate (``latency`` False) and plan: play with ``planner`` (named ``name``, None:
    the agent's own, ``train.act_planner`` or the trained one) and summarize, after
    compiling the value gradient if asked."""
    compiled = compile_for_acting(agent, planner) if compile else {}
    result = episodes.play(agent, planner, latency)
    own = agent.cfg.train.act_planner or agent.cfg.planner.name
    return summarize(agent, name or own, result, latency) | compiled
