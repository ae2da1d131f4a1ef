"""The MuJoCo simulator as the model sequence planners plan through (``--true-model``): the
ground-truth check of a planner before it meets a learned model (mbrl-lib PR 88).

Before each action the live episodes' simulator states are copied (``sync``). A rollout of
M = B n trajectories gives each its own copy of its episode's state (``mujoco.mj_copyData``:
positions, velocities, warm starts, everything the next step reads) and steps it with the
environment's own ``step``, so rewards and terminations are the task's own.
"""

import mujoco
import numpy as np
import torch
from torch import Tensor

from mbiapo.envs import make_env
from mbiapo.errors import MbiapoError
from mbiapo.models.world_model import Prediction


class SimulatorDynamics:
    """``Dynamics`` from copies of the simulator state of the synced environments (rows
    ``b n .. (b + 1) n - 1`` of a rollout start in ``envs[b]``'s state). Not
    differentiable. Steps run one trajectory at a time in Python (tens of microseconds
    each): a checking tool, not a fast one."""

    differentiable = False

    def __init__(self, env_id: str):
        self.env = make_env(env_id).unwrapped
        if not hasattr(self.env, "data") or not hasattr(self.env, "model"):
            raise MbiapoError(f"--true-model needs a MuJoCo environment; '{env_id}' is not one")
        space = self.env.action_space
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.roots: list[mujoco.MjData] = []
        self.pool: list[mujoco.MjData] = []
        self.synced = 0

    def sync(self, envs: list) -> None:
        """Copy the states of the live episodes' environments (one per planned state)."""
        while len(self.roots) < len(envs):
            self.roots.append(mujoco.MjData(self.env.model))
        for root, env in zip(self.roots, envs):
            mujoco.mj_copyData(root, self.env.model, env.unwrapped.data)
        self.synced = len(envs)

    def begin(self, obs: Tensor):
        """The step function of one rollout of the rows of obs (M, S), M a multiple of the
        synced episodes; each row starts in its episode's copied state."""
        rows = obs.shape[0]
        if not self.synced or rows % self.synced:
            raise MbiapoError("the simulator model has no synced state for these states: "
                              "--true-model plans in episodes of its environment only")
        per_root = rows // self.synced
        while len(self.pool) < rows:
            self.pool.append(mujoco.MjData(self.env.model))
        for r in range(rows):
            mujoco.mj_copyData(self.pool[r], self.env.model, self.roots[r // per_root])
        return lambda s, a: self._step(a, s)

    def _step(self, actions: Tensor, like: Tensor) -> Prediction:
        """Step every row's copy with its action in [-1, 1] (rescaled to the env's bounds)."""
        acts = actions.detach().cpu().double().numpy()
        acts = self.low + (acts + 1.0) * 0.5 * (self.high - self.low)
        next_obs, rewards, conts = [], [], []
        env, data = self.env, self.env.data
        try:
            for r, action in enumerate(acts):
                env.data = self.pool[r]
                o, reward, terminated, _, _ = env.step(action)
                next_obs.append(o)
                rewards.append(reward)
                conts.append(0.0 if terminated else 1.0)
        finally:
            env.data = data

        def tensor(x) -> Tensor:
            return torch.as_tensor(np.asarray(x), dtype=like.dtype, device=like.device)

        return Prediction(tensor(np.stack(next_obs)), tensor(rewards), tensor(conts))
