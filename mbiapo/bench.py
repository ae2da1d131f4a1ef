"""``mbiapo bench``: update rates and acting latency on HalfCheetah-v5 shapes, against
stable-baselines3's SAC (same network sizes and batch) measured in the same process."""

import sys
import time

import numpy as np
import torch

from mbiapo.agent import Agent
from mbiapo.config import PLANNER_NAMES, compose
from mbiapo.replay import ReplayBuffer

ENV_ID = "HalfCheetah-v5"
OBS_DIM, ACT_DIM = 17, 6


def _rate(fn, seconds: float, warmup: int = 3, blocks: int = 5) -> float:
    """Calls per second of ``fn``: the best of ``blocks`` timed blocks within about
    ``seconds`` (as ``timeit`` advises: the fastest block is the least disturbed one)."""
    for _ in range(warmup):
        fn()
    best = 0.0
    for _ in range(blocks):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / blocks:
            fn()
            calls += 1
        best = max(best, calls / (time.perf_counter() - start))
    return best


def _random_buffer(rng: np.random.Generator, n: int = 10_000) -> ReplayBuffer:
    buf = ReplayBuffer(OBS_DIM, ACT_DIM, n)
    for arr in buf.data.values():
        if arr.dtype == np.float32:
            arr[:] = rng.standard_normal(arr.shape).astype(np.float32)
    buf.data["actions"][:] = np.tanh(buf.data["actions"])
    buf.size = n
    return buf


def agent_update_rate(planner: str, seconds: float, overrides: list[str] = ()) -> float:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    agent = Agent(compose(ENV_ID, planner, overrides=list(overrides)), OBS_DIM, ACT_DIM)
    buf = _random_buffer(rng)
    return _rate(lambda: agent.update(buf.sample(256, rng)), seconds)


def acting_latency_ms(planner: str, seconds: float) -> float:
    torch.manual_seed(0)
    trained = planner if planner in ("direct", "iterative") else "direct"
    agent = Agent(compose(ENV_ID, trained), OBS_DIM, ACT_DIM)
    chosen = agent.planner_named(planner)
    obs = np.random.default_rng(0).standard_normal(OBS_DIM).astype(np.float32)
    return 1e3 / _rate(lambda: agent.act(obs, planner=chosen), seconds)


def sb3_update_rate(seconds: float) -> float | None:
    """stable-baselines3 SAC gradient steps per second (2x256 nets, batch 256)."""
    try:
        from stable_baselines3 import SAC
    except ImportError:
        return None
    import gymnasium as gym

    model = SAC("MlpPolicy", gym.make(ENV_ID), batch_size=256, learning_starts=1000,
                policy_kwargs={"net_arch": [256, 256]}, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=1000)  # fills the replay buffer, no gradient step yet
    steps = 10
    return steps * _rate(lambda: model.train(gradient_steps=steps, batch_size=256),
                         seconds, warmup=1)


def run_bench(seconds: float = 5.0, with_sb3: bool = True) -> dict:
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result: dict = {"env_shapes": ENV_ID, "torch_threads": torch.get_num_threads()}
    for planner in ("direct", "iterative"):
        log(f"measuring {planner} agent updates...")
        result[f"updates_per_s_{planner}"] = agent_update_rate(planner, seconds)
    result["iterative_update_cost_vs_direct"] = (
        result["updates_per_s_direct"] / result["updates_per_s_iterative"])
    if with_sb3:
        log("measuring stable-baselines3 SAC updates...")
        sb3 = sb3_update_rate(seconds)
        if sb3 is None:
            log("stable-baselines3 is not installed (pip install stable-baselines3); skipped")
        else:
            result["updates_per_s_sb3_sac"] = sb3
            result["direct_speedup_vs_sb3"] = result["updates_per_s_direct"] / sb3
    for planner in PLANNER_NAMES:
        log(f"measuring {planner} acting latency...")
        result[f"act_latency_ms_{planner}"] = acting_latency_ms(planner, seconds / 2)
    return result
