"""The checkpoint shipped in mbiapo/pretrained/ (the README's first command uses it)."""

from pathlib import Path

import numpy as np

from mbiapo.checkpoint import check_env_matches, load_agent
from mbiapo.envs import env_dims, make_env
from mbiapo.evaluate import run_episodes
from mbiapo.replay import ReplayBuffer

SHIPPED = Path(__file__).resolve().parents[1] / "mbiapo" / "pretrained" / "ip-iterative"


def test_shipped_checkpoint_loads_carries_its_replay_and_balances_the_pendulum():
    agent, payload = load_agent(SHIPPED)
    assert payload["step"] == 10_000 and agent.cfg.planner.name == "iterative"
    env = make_env(agent.cfg.env.id)
    check_env_matches(payload, *env_dims(env), agent.cfg.env.id)
    replay = ReplayBuffer.load(SHIPPED / "replay.h5")
    assert len(replay) == 10_000 and replay.obs_dim == agent.obs_dim
    result = run_episodes(agent, agent.cfg.env.id, episodes=2, seed=0)
    assert np.mean(result["returns"]) >= 900
