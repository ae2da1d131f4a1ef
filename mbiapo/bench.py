"""``mbiapo bench``: update rates and acting latency on HalfCheetah-v5 shapes, against
stable-baselines3's SAC (same network sizes and batch) measured in the same process,
model-based agents (h = 2) against model-free ones, updates and model-based acting beside a
busy process (updates with every core and with the thread policy's choice), the time
``mbiapo compare`` needs, and loading a 1M-transition D4RL file."""

import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from mbiapo import threads
from mbiapo.agent import Agent
from mbiapo.config import compose
from mbiapo.planners import PLANNERS, DirectPlanner, IterativePlanner, untrained_planners
from mbiapo.replay import ReplayBuffer

ENV_ID = "HalfCheetah-v5"
OBS_DIM, ACT_DIM = 17, 6
DIRECT, ITERATIVE = PLANNERS.name_of(DirectPlanner), PLANNERS.name_of(IterativePlanner)
ENSEMBLES = {"e5": ["value.model_members=5"],
             "e5_penalty": ["value.model_members=5", "value.uncertainty_penalty=1"]}
"""World-model ensembles timed against the one model (model-based direct agents): five
members, and five members with the disagreement penalty (every elite on every row)."""


def _rates(fns: dict, seconds: float, rounds: int = 5, warmup: int = 3) -> dict[str, float]:
    """Calls per second of each function: the best of ``rounds`` blocks of about
    ``seconds / rounds`` each, taken in turns (A B C A B C ...) so that a machine that speeds
    up or slows down during the benchmark affects every contender alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for name, fn in fns.items():
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / rounds:
                fn()
                calls += 1
            best[name] = max(best[name], calls / (time.perf_counter() - start))
    return best


def _random_buffer(rng: np.random.Generator, n: int = 10_000) -> ReplayBuffer:
    buf = ReplayBuffer(OBS_DIM, ACT_DIM, n)
    for arr in buf.data.values():
        if arr.dtype == np.float32:
            arr[:] = rng.standard_normal(arr.shape).astype(np.float32)
    buf.data["actions"][:] = np.tanh(buf.data["actions"])
    buf.size = n
    return buf


def _agent(planner: str, value: str, device: str, compiled: bool, overrides=()) -> Agent:
    torch.manual_seed(0)
    agent = Agent(compose(ENV_ID, planner, overrides=[f"value.kind={value}",
                                                      f"train.device={device}", *overrides]),
                  OBS_DIM, ACT_DIM)
    if compiled:
        agent.compile_value_gradient()
    return agent


def agent_update(planner: str, value: str = "model-free", compiled: bool = False,
                 device: str = "cpu", overrides=()):
    """A function doing one update of a fresh agent on random HalfCheetah-shaped data (with
    ``compiled``, as ``train.compile=true`` trains; the first two calls compile; config
    ``overrides`` such as ``value.model_members=5``)."""
    rng = np.random.default_rng(0)
    agent = _agent(planner, value, device, compiled, overrides)
    buf = _random_buffer(rng)

    def update():
        agent.update(buf.sample(256, rng, agent.device))
        if agent.device.type == "cuda":
            torch.cuda.synchronize()

    return update


def agent_act(planner: str, value: str = "model-free", compiled: bool = False,
              device: str = "cpu", trained: str = DIRECT):
    """A function planning one action (batch 1) with the given planner (with ``compiled``,
    through ``Agent.compile_value_gradient``; the first call compiles); an untrained one
    runs on an agent whose planner is ``trained`` (a sequence planner's prior)."""
    trained = planner if PLANNERS.get(planner).build.trainable else trained
    agent = _agent(trained, value, device, compiled)
    chosen = agent.planner_named(planner)
    obs = np.random.default_rng(0).standard_normal(OBS_DIM).astype(np.float32)
    return lambda: agent.act(obs, planner=chosen)


@contextmanager
def busy_neighbour():
    """One CPU-bound process running beside the block."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it get scheduled
        yield
    finally:
        spinner.kill()
        spinner.wait()


def busy_neighbour_slowdown(act, seconds: float) -> dict[str, float]:
    """Latency of ``act`` (ms) idle and with one CPU-bound process running beside it."""
    idle = 1e3 / _rates({"idle": act}, seconds)["idle"]
    with busy_neighbour():
        busy = 1e3 / _rates({"busy": act}, seconds)["busy"]
    return {"idle_ms": idle, "busy_ms": busy, "busy_vs_idle": busy / idle}


def _on_threads(fn, count: int):
    def call():
        torch.set_num_threads(count)
        fn()
    return call


def shared_machine(updates: dict, seconds: float) -> dict[str, float]:
    """Update rates idle and beside one CPU-bound process, each with every usable core
    (torch's default, before the thread policy) and with the count the auto policy chooses
    there, and idle on one thread: the ratios the thread policy is judged by, and the bound
    on them (beside a busy process one core is free: one thread idle is the most to hope)."""
    before, cores = torch.get_num_threads(), threads.ThreadPolicy(threads.AUTO).usable
    result: dict[str, float] = {"threads_all": cores}
    rates = {}
    try:
        for case in ("idle", "busy"):
            with busy_neighbour() if case == "busy" else nullcontext():
                auto = threads.ThreadPolicy(threads.AUTO).apply().threads
                result[f"threads_auto_{case}"] = auto
                counts = {"all": cores, "auto": auto} | ({"one": 1} if case == "idle" else {})
                fns = {f"{name}_{case}_{label}": _on_threads(fn, count)
                       for name, fn in updates.items() for label, count in counts.items()}
                rates |= _rates(fns, seconds * len(fns))
    finally:
        torch.set_num_threads(before)
    result |= {f"updates_per_s_{name}": rate for name, rate in rates.items()}
    for n in updates:
        result[f"{n}_busy_vs_idle_auto"] = rates[f"{n}_busy_auto"] / rates[f"{n}_idle_auto"]
        result[f"{n}_busy_vs_idle_all_threads"] = rates[f"{n}_busy_all"] / rates[f"{n}_idle_all"]
        result[f"{n}_idle_auto_vs_all_threads"] = rates[f"{n}_idle_auto"] / rates[f"{n}_idle_all"]
        result[f"{n}_busy_auto_vs_idle_one_thread"] = (rates[f"{n}_busy_auto"]
                                                       / rates[f"{n}_idle_one"])
    return result


def sb3_update(steps: int = 10, device: str = "cpu"):
    """stable-baselines3 SAC doing ``steps`` gradient steps (2x256 nets, batch 256), or None."""
    try:
        from stable_baselines3 import SAC
    except ImportError:
        return None
    import gymnasium as gym

    model = SAC("MlpPolicy", gym.make(ENV_ID), batch_size=256, learning_starts=1000,
                policy_kwargs={"net_arch": [256, 256]}, seed=0, device=device, verbose=0)
    model.learn(total_timesteps=1000)  # fills the replay buffer, no gradient step yet
    return lambda: model.train(gradient_steps=steps, batch_size=256)


def compare_seconds(states: int = 100, iters: int = 100) -> float:
    """Wall-clock of ``mbiapo compare``'s work (planning and scoring, no file output) for
    the iterative, direct and every untrained planner on ``states`` random HalfCheetah-shaped
    states."""
    from mbiapo.analyses.common import agent_objective
    from mbiapo.analyses.compare import compare

    torch.manual_seed(0)
    agent = Agent(compose(ENV_ID, ITERATIVE), OBS_DIM, ACT_DIM)
    direct = Agent(compose(ENV_ID, DIRECT), OBS_DIM, ACT_DIM)
    planners = {ITERATIVE: agent.planner, DIRECT: direct.planner,
                **{name: agent.planner_named(name) for name in untrained_planners()}}
    obs = torch.randn(states, OBS_DIM)
    start = time.perf_counter()
    compare(planners, agent_objective(agent, None, None), agent_objective(agent, None, 100),
            obs, iters)
    return time.perf_counter() - start


def dataset_load(rows: int = 1_000_000, next_observations: bool = True) -> dict[str, float]:
    """Seconds to read a ``rows``-transition HalfCheetah-shaped D4RL file (warm page cache)
    into replay arrays, and the peak of memory allocated while reading (tracemalloc) over
    the arrays' own bytes."""
    import gc
    import tempfile
    import tracemalloc
    from pathlib import Path

    from mbiapo.datasets import FIELDS, normalized_actions, read_dataset, write_d4rl

    rng = np.random.default_rng(0)
    arrays = {"observations": rng.standard_normal((rows, OBS_DIM), np.float32),
              "actions": rng.uniform(-1, 1, (rows, ACT_DIM)).astype(np.float32),
              "rewards": rng.standard_normal(rows, np.float32),
              "terminals": np.zeros(rows, bool), "timeouts": np.arange(rows) % 1000 == 999}
    arrays["next_observations"] = np.roll(arrays["observations"], -1, 0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.h5"
        write_d4rl(path, {k: arrays[k] for k in FIELDS}, {})
        if not next_observations:
            import h5py

            with h5py.File(path, "a") as f:
                del f["next_observations"]
        del arrays
        gc.collect()

        def load():
            data = read_dataset(path)
            normalized_actions(data, None, None)
            return ReplayBuffer.from_dataset(data)

        start = time.perf_counter()
        buffer = load()
        seconds = time.perf_counter() - start
        array_bytes = sum(a.nbytes for a in buffer.data.values())
        del buffer
        gc.collect()
        tracemalloc.start()
        load()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    suffix = "" if next_observations else "_rebuilt_next"
    return {f"dataset_load_seconds_{rows // 1000}k{suffix}": seconds,
            f"dataset_load_peak_vs_array_bytes{suffix}": peak / array_bytes}


def run_bench(seconds: float = 5.0, with_sb3: bool = True, with_model_based: bool = True,
              compare_size: tuple[int, int] | None = (100, 100),
              dataset_rows: int | None = 1_000_000, device: str = "cpu") -> dict:
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result: dict = {"env_shapes": ENV_ID, "device": device,
                    "torch_threads": torch.get_num_threads()}
    planners = (DIRECT, ITERATIVE)
    updates = {p: agent_update(p, device=device) for p in planners}
    updates |= {f"{p}_compiled": agent_update(p, compiled=True, device=device) for p in planners}
    if with_model_based:
        updates |= {f"mb_{p}": agent_update(p, "model-based", device=device) for p in planners}
        for name, settings in ENSEMBLES.items():
            updates[f"mb_direct_{name}"] = agent_update(DIRECT, "model-based", device=device,
                                                       overrides=settings)
    sb3_steps = 10
    if with_sb3:
        sb3 = sb3_update(sb3_steps, device)
        if sb3 is None:
            log("stable-baselines3 is not installed (pip install -e .[bench]); skipped")
        else:
            updates["sb3_sac"] = sb3
    log(f"measuring update rates of {', '.join(updates)} (in turns; compiling first)...")
    rates = _rates(updates, seconds * len(updates))
    if "sb3_sac" in rates:
        rates["sb3_sac"] *= sb3_steps
    result |= {f"updates_per_s_{name}": rate for name, rate in rates.items()}
    for suffix in ("", "_compiled"):
        result[f"{ITERATIVE}_update_cost_vs_{DIRECT}{suffix}"] = (
            rates[f"{DIRECT}{suffix}"] / rates[f"{ITERATIVE}{suffix}"])
        if "sb3_sac" in rates:
            result[f"{DIRECT}_speedup_vs_sb3{suffix}"] = (rates[f"{DIRECT}{suffix}"]
                                                          / rates["sb3_sac"])
    if with_model_based:
        for p in planners:
            result[f"model_based_update_rate_vs_model_free_{p}"] = rates[f"mb_{p}"] / rates[p]
        for name in ENSEMBLES:
            result[f"mb_direct_{name}_update_rate_vs_e1"] = (rates[f"mb_direct_{name}"]
                                                             / rates["mb_direct"])
    log("measuring acting latency (batch 1) per planner...")
    acts = {planner: agent_act(planner, device=device)
            for planner in [DIRECT, ITERATIVE, *untrained_planners()]}
    acts[f"{ITERATIVE}_compiled"] = agent_act(ITERATIVE, compiled=True, device=device)
    if with_model_based:
        acts["mb_iterative"] = agent_act(ITERATIVE, "model-based", device=device)
        # TD-MPC2's MPPI (512 sequences, H = 5, 6 iterations) with the iterative prior
        for suffix, compiled in (("", False), ("_compiled", True)):
            acts[f"mb_mppi_seq{suffix}"] = agent_act("mppi-seq", "model-based", compiled,
                                                     device, ITERATIVE)
        log("compiling the model-based value gradient (plan --compile)...")
        acts["mb_iterative_compiled"] = agent_act(ITERATIVE, "model-based", compiled=True,
                                                  device=device)
        start = time.perf_counter()
        acts["mb_iterative_compiled"]()
        result["mb_compile_seconds"] = time.perf_counter() - start
    latency = _rates(acts, seconds * len(acts) / 2)
    result |= {f"act_latency_ms_{name}": 1e3 / rate for name, rate in latency.items()}
    if with_model_based:
        log("model-based acting with a CPU-bound process beside it...")
        busy = busy_neighbour_slowdown(acts["mb_iterative"], seconds)
        result |= {f"mb_iterative_act_{key}": value for key, value in busy.items()}
    log("update rates beside a CPU-bound process, all cores and the thread policy's choice...")
    shared = {"mf_direct": agent_update(DIRECT, device=device)}
    if with_model_based:
        shared["mb_direct"] = agent_update(DIRECT, "model-based", device=device)
    result |= shared_machine(shared, seconds)
    if compare_size:
        states, iters = compare_size
        count = 2 + len(untrained_planners())
        log(f"timing compare: {states} states x {count} planners x {iters} iterations...")
        result[f"compare_seconds_{states}x{count}x{iters}"] = compare_seconds(states, iters)
    if dataset_rows:
        log(f"timing dataset loading: {dataset_rows} transitions, with and without "
            f"next_observations...")
        result |= dataset_load(dataset_rows) | dataset_load(dataset_rows, False)
    return result
