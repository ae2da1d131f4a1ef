"""Checkpoints: one ``torch.save`` file of plain tensors and dicts (loadable with
``weights_only=True``), written atomically; the replay buffer goes beside it as HDF5."""

import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from mbiapo.agent import Agent
from mbiapo.config import from_container
from mbiapo.errors import MbiapoError

FORMAT = "mbiapo-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, agent: Agent, state: dict) -> None:
    """``state``: counters, RNG states, replay file name... (plain values only)."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": OmegaConf.to_container(agent.cfg, resolve=True),
        "env_id": agent.cfg.env.id,
        "obs_dim": agent.obs_dim,
        "act_dim": agent.act_dim,
        "agent": agent.state_dict(),
        "optimizers": agent.optimizer_state(),
        **state,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    """The raw payload; one clear MbiapoError for a missing, corrupt or foreign file."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise MbiapoError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch.load raises many types on foreign or truncated files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MbiapoError(f"{path}: not a readable mbiapo checkpoint ({reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MbiapoError(f"{path}: not an mbiapo checkpoint")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise MbiapoError(f"{path}: checkpoint format {payload['format_version']} is newer "
                          f"than this mbiapo supports ({FORMAT_VERSION}); upgrade mbiapo")
    payload["path"] = str(path)
    return payload


def load_agent(path: str | Path, device: str = "cpu") -> tuple[Agent, dict]:
    """Rebuild the agent (modules and optimizers) from a checkpoint."""
    payload = read_checkpoint(path, device)
    cfg = from_container(payload["config"])
    cfg.train.device = device
    agent = Agent(cfg, payload["obs_dim"], payload["act_dim"])
    try:
        agent.load_state_dict(payload["agent"])
        agent.load_optimizer_state(payload["optimizers"])
    except (RuntimeError, KeyError, ValueError) as e:
        detail = " ".join(str(e).split())  # torch's message spans lines
        raise MbiapoError(f"{payload['path']}: checkpoint does not match its config or this "
                          f"mbiapo version ({detail[:300]})") from None
    return agent, payload


def check_env_matches(payload: dict, obs_dim: int, act_dim: int, env_id: str) -> None:
    if (payload["obs_dim"], payload["act_dim"]) != (obs_dim, act_dim):
        raise MbiapoError(
            f"{payload['path']}: checkpoint was trained on {payload['env_id']} with "
            f"observation/action sizes {payload['obs_dim']}/{payload['act_dim']}, but "
            f"{env_id} has {obs_dim}/{act_dim}")
