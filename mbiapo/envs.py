"""Gymnasium environments, with actions rescaled to [-1, 1] (the tanh-Gaussian's range)."""

import os
import warnings

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.wrappers import RescaleAction

from mbiapo.errors import MbiapoError

# MuJoCo's default warning handler appends to MUJOCO_LOG.TXT in the working directory;
# route its warnings through Python's instead, where users can see or filter them.
mujoco.set_mju_user_warning(lambda message: warnings.warn(f"MuJoCo: {message}", stacklevel=1))

NO_ENV = "none"  # env.id of an offline run whose dataset names no environment


def make_env(env_id: str, max_episode_steps: int | None = None, render: bool = False
             ) -> gym.Env:
    """A flat-Box-observation, Box-action env whose actions lie in [-1, 1]; with ``render``,
    ``env.render()`` returns RGB frames (offscreen with EGL where there is no display)."""
    if render and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")  # read when the first renderer is made
    if env_id == NO_ENV:
        raise MbiapoError("no environment to run: the agent was trained offline on a dataset "
                          "that names none (evaluate and plan take --env ENV_ID)")
    try:
        env = gym.make(env_id, max_episode_steps=max_episode_steps,
                       **({"render_mode": "rgb_array"} if render else {}))
    except gym.error.Error as e:
        raise MbiapoError(f"cannot make environment '{env_id}': {e}") from None
    except ImportError as e:
        raise MbiapoError(f"environment '{env_id}' needs a missing package: {e}") from None
    except Exception as e:  # a registered constructor's own failure (a plugin's environment)
        detail = " ".join(str(e).split())[:300]
        raise MbiapoError(f"cannot make environment '{env_id}': {type(e).__name__}: "
                          f"{detail}") from None
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Box) or not isinstance(obs_space, gym.spaces.Box) \
            or len(obs_space.shape) != 1 or len(act_space.shape) != 1:
        env.close()
        raise MbiapoError(f"'{env_id}' needs flat Box observations and actions; "
                          f"it has {obs_space} and {act_space}")
    ones = np.ones(act_space.shape, np.float32)
    return RescaleAction(env, -ones, ones)


def action_bounds(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The environment's own action bounds (low, high), each (A,), before rescaling."""
    env = make_env(env_id)
    space = env.unwrapped.action_space
    env.close()
    return space.low.astype(np.float64), space.high.astype(np.float64)


def env_dims(env: gym.Env) -> tuple[int, int]:
    """(observation size, action size)."""
    return env.observation_space.shape[0], env.action_space.shape[0]
