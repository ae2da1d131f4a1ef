"""Value bias (paper A.2, Fig. 3a): E[Q-hat(s, a) - Q(s, a)] on state-action pairs from a
uniform random policy, with Q(s, a) estimated by Monte Carlo in the real environment: take a,
then follow the agent's (stochastic) planner, summing the soft return
r_0 + sum_{t>=1} gamma^t (r_t - alpha log pi(a_t|s_t)) that the Q nets estimate."""

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from mbiapo.agent import Agent
from mbiapo.analyses import plots
from mbiapo.analyses.common import Setup, mean_std, write_csv
from mbiapo.envs import make_env
from mbiapo.errors import MbiapoError
from mbiapo.models.tanh_gaussian import TanhGaussian
from mbiapo.seeding import seed_everything


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
    seed_everything(seed)
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


def run(setup: Setup, pairs: int, rollouts: int, horizon: int) -> dict:
    """``mbiapo bias``: Q-hat minus the Monte Carlo mean on ``pairs`` uniform state-action
    pairs; writes bias.csv, summary.json, bias.png."""
    agent, seed = setup.agent, setup.seed
    chosen = uniform_pairs(agent.cfg.env.id, pairs, seed)
    q_mc = monte_carlo(agent, chosen, rollouts, horizon, seed)
    q_hat = estimated_q(agent, chosen, setup.beta_used)
    bias = torch.as_tensor(q_hat - q_mc.mean(1))
    write_csv(setup.out / "bias.csv", [
        {"pair": k, "q_hat": f"{q_hat[k]:.6g}", "q_mc": f"{q_mc[k].mean():.6g}",
         "q_mc_std": f"{q_mc[k].std():.6g}", "bias": f"{bias[k]:.6g}"}
        for k in range(pairs)])
    summary = {**setup.header("bias", pairs), "pairs": pairs, "rollouts": rollouts,
               "horizon": horizon, "discount_left_at_horizon": agent.cfg.train.gamma ** horizon,
               "alpha": agent.alpha, "bias": mean_std(bias),
               "q_hat_mean": float(q_hat.mean()), "q_mc_mean": float(q_mc.mean())}
    table = (f"value bias E[Q-hat - Q_MC] over {pairs} uniform state-action pairs: "
             f"{summary['bias']['mean']:.4g} ± {summary['bias']['std']:.3g} (Q-hat mean "
             f"{summary['q_hat_mean']:.4g}, Monte Carlo mean {summary['q_mc_mean']:.4g}, "
             f"{rollouts} rollouts x {horizon} steps)")
    return setup.finish(summary, plots.plot_bias, table)
