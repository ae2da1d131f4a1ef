"""Value bias (paper A.2, Fig. 3a): E[Q-hat(s, a) - Q(s, a)] on state-action pairs from a
uniform random policy, with Q(s, a) estimated by Monte Carlo in the real environment: take a,
then follow the agent's (stochastic) planner, summing the soft return
r_0 + sum_{t>=1} gamma^t (r_t - alpha log pi(a_t|s_t)) that the Q nets estimate."""

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from mbiapo.agent import Agent
from mbiapo.envs import make_env
from mbiapo.errors import MbiapoError
from mbiapo.models.tanh_gaussian import TanhGaussian


@dataclass
class Pairs:
    """n state-action pairs with the simulator state to restore them: obs (n, S),
    actions (n, A), qpos (n, nq), qvel (n, nv)."""

    obs: np.ndarray
    actions: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray


def uniform_pairs(env_id: str, n: int, seed: int, every: int = 10) -> Pairs:
    """Every ``every``-th step of uniform-random episodes (seeds seed, seed+1, ...)."""
    env = make_env(env_id)
    if not hasattr(env.unwrapped, "set_state"):
        env.close()
        raise MbiapoError(f"bias needs a MuJoCo environment (one with set_state); "
                          f"{env_id} is not")
    rng = np.random.default_rng(seed)
    rows, episode, step = [], 0, 0
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    while len(rows) < n:
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        if step % every == 0:
            data = env.unwrapped.data
            rows.append((obs, action, data.qpos.copy(), data.qvel.copy()))
        obs, _, terminated, truncated, _ = env.step(action)
        step += 1
        if terminated or truncated:
            episode, step = episode + 1, 0
            obs, _ = env.reset(seed=seed + episode)
    env.close()
    return Pairs(*(np.stack(column) for column in zip(*rows)))


@torch.no_grad()
def monte_carlo(agent: Agent, pairs: Pairs, rollouts: int, horizon: int, seed: int) -> np.ndarray:
    """Soft Monte Carlo returns (n, rollouts): every pair restored ``rollouts`` times, all
    run side by side for at most ``horizon`` steps, with the agent's planner sampling actions
    (beta_collect, as when acting) and alpha and gamma from the agent."""
    torch.manual_seed(seed)
    n = len(pairs.obs)
    gamma, alpha = agent.cfg.train.gamma, agent.alpha
    envs = [make_env(agent.cfg.env.id, max_episode_steps=horizon + 1) for _ in range(n * rollouts)]
    obs = np.empty((n * rollouts, agent.obs_dim), np.float32)
    for k, env in enumerate(envs):
        env.reset(seed=seed + k)
        env.unwrapped.set_state(pairs.qpos[k // rollouts], pairs.qvel[k // rollouts])
    returns = np.zeros(n * rollouts)
    live = np.arange(n * rollouts)
    actions = np.repeat(pairs.actions, rollouts, axis=0)
    for t in tqdm(range(horizon), desc="monte carlo", leave=False, unit="step"):
        if t > 0:  # the planner's actions after the pair's own
            batch = torch.as_tensor(obs[live], device=agent.device)
            plan = agent.planner.plan(agent.objective(batch, agent.cfg.value.beta_collect,
                                                      agent.cfg.planner.samples),
                                      batch, record=False)
            sampled, _, log_prob = TanhGaussian(plan.mu, plan.log_std).rsample(1)
            actions[live] = sampled[:, 0].cpu().numpy()
            returns[live] -= gamma ** t * alpha * log_prob[:, 0].cpu().numpy()
        still = []
        for k in live:
            obs[k], reward, terminated, _, _ = envs[k].step(actions[k])
            returns[k] += gamma ** t * reward
            if not terminated:
                still.append(k)
        live = np.array(still, dtype=int)
        if len(live) == 0:
            break
    for env in envs:
        env.close()
    return returns.reshape(n, rollouts)


@torch.no_grad()
def estimated_q(agent: Agent, pairs: Pairs, beta: float) -> np.ndarray:
    """Q-hat (n,) of the agent's value estimate with pessimism ``beta``."""
    obs = torch.as_tensor(pairs.obs, dtype=torch.float32, device=agent.device)
    actions = torch.as_tensor(pairs.actions, dtype=torch.float32, device=agent.device)[:, None]
    return agent.value(obs, actions, beta)[:, 0].cpu().numpy()
