"""The agent: a planner acting on a pessimistic Q ensemble, trained with the SAC setup.

The whole learning step is ``Agent.update``: (1) critic regression to soft targets whose
next actions come from the acting planner, (2) planner training on -J (direct and iterative
planners only), (3) temperature tuning towards the target entropy, (4) Polyak averaging.
"""

import math

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from mbiapo.config import planner_group
from mbiapo.errors import MbiapoError
from mbiapo.models.q_ensemble import QEnsemble, pessimistic
from mbiapo.models.tanh_gaussian import TanhGaussian
from mbiapo.objective import SoftObjective
from mbiapo.planners import AdamPlanner, CEMPlanner, DirectPlanner, IterativePlanner, Planner
from mbiapo.value import ModelFreeValue


def build_planner(name: str, cfg: DictConfig, obs_dim: int, act_dim: int) -> Planner:
    """A planner from the ``planner`` config group."""
    if name == "direct":
        return DirectPlanner(obs_dim, act_dim, cfg.hidden, cfg.layers)
    if name == "iterative":
        return IterativePlanner(obs_dim, act_dim, cfg.iters, cfg.hidden, cfg.layers)
    if name == "adam":
        return AdamPlanner(act_dim, cfg.iters, cfg.adam_lr)
    if name == "cem":
        return CEMPlanner(act_dim, cfg.iters, cfg.cem_samples, cfg.cem_elites,
                          cfg.cem_smoothing)
    raise MbiapoError(f"unknown planner '{name}'; choose one of: direct, iterative, adam, cem")


class Agent(nn.Module):
    def __init__(self, cfg: DictConfig, obs_dim: int, act_dim: int):
        super().__init__()
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(cfg.train.device)
        v, t = cfg.value, cfg.train
        self.q = QEnsemble(obs_dim, act_dim, v.members, v.hidden, v.layers)
        self.q_target = QEnsemble(obs_dim, act_dim, v.members, v.hidden, v.layers)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.planner = build_planner(cfg.planner.name, cfg.planner, obs_dim, act_dim)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(t.init_alpha)))
        self.target_entropy = -float(act_dim) if t.target_entropy is None else t.target_entropy
        self.value = ModelFreeValue(self.q)
        self.to(self.device)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=t.lr, fused=True)
        # the planner and the temperature step together: one optimizer, two groups
        groups = [{"params": [self.log_alpha]}]
        if self.planner.trainable:
            groups.append({"params": list(self.planner.parameters())})
        self.policy_opt = torch.optim.Adam(groups, lr=t.lr, fused=True)

    # ----------------------------------------------------------------------------- planning
    @property
    def alpha(self) -> float:
        return self.log_alpha.detach().exp().item()

    def objective(self, obs: Tensor, beta: float, samples: int) -> SoftObjective:
        """J(s, .) for the states obs (B, S) under the pessimistic model-free value."""
        return SoftObjective(lambda actions: self.value(obs, actions, beta), self.alpha,
                             self.act_dim, samples,
                             lambda actions: self.value.value_and_grad(obs, actions, beta))

    def planner_named(self, name: str | None) -> Planner:
        """The trained planner, or an untrained one (adam, cem) built from the config."""
        if name is None or name == self.cfg.planner.name:
            return self.planner
        if name in ("direct", "iterative"):
            raise MbiapoError(f"this checkpoint trained a '{self.cfg.planner.name}' planner, "
                              f"so it has no trained '{name}' planner; use "
                              f"{self.cfg.planner.name}, adam or cem")
        return build_planner(name, planner_group(name, self.cfg.planner), self.obs_dim,
                             self.act_dim)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, planner: Planner | None = None,
            iters: int | None = None) -> np.ndarray:
        """obs (S,) or (B, S) -> actions in [-1, 1] of shape (A,) or (B, A)."""
        o = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        batch = o.reshape(-1, self.obs_dim)
        objective = self.objective(batch, self.cfg.value.beta_collect, self.cfg.planner.samples)
        plan = (planner or self.planner).plan(objective, batch, iters, record=False)
        dist = TanhGaussian(plan.mu, plan.log_std)
        action = dist.mode if deterministic else dist.rsample(1)[0][:, 0]
        return action.reshape(*o.shape[:-1], self.act_dim).cpu().numpy()

    # ----------------------------------------------------------------------------- learning
    @torch.no_grad()
    def critic_target(self, batch: dict[str, Tensor]) -> Tensor:
        """y = r + gamma (1 - done) (Q_targ(s', a') - alpha log pi(a'|s')), a' from the acting
        planner at s' with beta_train: (B,)."""
        beta, next_obs = self.cfg.value.beta_train, batch["next_obs"]
        objective = self.objective(next_obs, beta, self.cfg.planner.train_samples)
        plan = self.planner.plan(objective, next_obs, record=False)
        next_act, _, next_logp = TanhGaussian(plan.mu, plan.log_std).rsample(1)
        next_v = pessimistic(self.q_target(next_obs, next_act[:, 0]), beta)
        soft_v = next_v - self.alpha * next_logp[:, 0]
        return batch["rew"] + self.cfg.train.gamma * (1 - batch["done"]) * soft_v

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step on a replay batch (obs, act, rew, next_obs, done); returns metrics."""
        cfg = self.cfg
        beta, samples = cfg.value.beta_train, cfg.planner.train_samples
        obs = batch["obs"]

        # 1. critic regression to the soft target
        target = self.critic_target(batch)
        q_loss = 0.5 * (self.q(obs, batch["act"]) - target).pow(2).mean(1).sum()
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_opt.step()

        # 2. planner: ascend mean_k J(lambda_k) (the surrogate's graph is the planner's own)
        plan = self.planner.plan(self.objective(obs, beta, samples), obs, record=True)
        # 3. temperature: keep the entropy of the planned distributions near the target
        with torch.no_grad():
            _, _, logp = TanhGaussian(plan.mu.detach(), plan.log_std.detach()).rsample(1)
        loss = -(self.log_alpha * (logp + self.target_entropy)).mean()
        if plan.surrogate is not None:
            loss = loss - plan.surrogate
        self.policy_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.policy_opt.step()

        # 4. targets
        with torch.no_grad():
            torch._foreach_lerp_(list(self.q_target.parameters()), list(self.q.parameters()),
                                 cfg.train.tau)
        return {"q_loss": q_loss.detach(), "objective": torch.stack(plan.values).mean(),
                "entropy": -logp.mean(), "alpha": self.log_alpha.detach().exp()}

    # ----------------------------------------------------------------------------- state
    def optimizer_state(self) -> dict:
        return {"q": self.q_opt.state_dict(), "policy": self.policy_opt.state_dict()}

    def load_optimizer_state(self, state: dict) -> None:
        self.q_opt.load_state_dict(state["q"])
        self.policy_opt.load_state_dict(state["policy"])
