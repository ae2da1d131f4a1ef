"""Checkpoints: one ``torch.save`` file of plain tensors and dicts (loadable with
``weights_only=True``), written atomically; the replay buffer goes beside it as HDF5.

Format 4 (mbiapo 0.4) keeps the value estimator's modules under ``estimator.``: 0.3's
``model.`` and ``rollout.`` are renamed when read, and the single model's log-std parameters
take the ensemble's shape (E = 1). Format 3 (mbiapo 0.3) records the plugins a checkpoint's
planner and value estimator come from, and each planner's own config keys; format 2 configs
(one planner group holding ``adam_lr`` and ``cem_*``) are read with those keys renamed
(``config.from_container``). Format 2 stores every network as a plain module
(``net.<i>.weight``...). Format 1 files (mbiapo 0.1, stacked ``w<i>``/``b<i>`` tensors) are
converted when read.
"""

import os
import re
from pathlib import Path

import torch
from omegaconf import OmegaConf

from mbiapo.agent import Agent, resolve_device
from mbiapo.config import from_container, plugins_of
from mbiapo.errors import MbiapoError
from mbiapo.paths import temporary, written

FORMAT = "mbiapo-checkpoint"
FORMAT_VERSION = 4


def save_checkpoint(path: str | Path, agent: Agent, state: dict) -> None:
    """``state``: counters, RNG states, replay file name... (plain values only)."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": OmegaConf.to_container(agent.cfg, resolve=True),
        "plugins": plugins_of(agent.cfg),  # {"planner.name": plugin, ...} beyond built-ins
        "env_id": agent.cfg.env.id,
        "obs_dim": agent.obs_dim,
        "act_dim": agent.act_dim,
        "agent": agent.state_dict(),
        "optimizers": agent.optimizer_state(),
        **state,
    }
    tmp = temporary(path)
    with written(path, tmp):  # a full disk: one line, and no tmp left
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename commits it
        os.replace(tmp, path)


PRETRAINED = "pretrained:"  # names a checkpoint shipped with mbiapo, e.g. pretrained:ip-iterative


def shipped(path: Path) -> bool:
    """Whether ``path`` lies inside the installed package (a shipped checkpoint)."""
    return Path(path).resolve().is_relative_to(Path(__file__).resolve().parent)


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file of a file path, a run folder or ``pretrained:NAME`` (a run
    shipped in the package's ``pretrained/`` folder)."""
    text = str(path)
    if text.startswith(PRETRAINED):
        folder = Path(__file__).parent / "pretrained"
        name = text[len(PRETRAINED):]
        path = folder / name
        if not _plain_name(name) or not path.is_dir():  # never a folder outside pretrained/
            names = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_dir()))
            raise MbiapoError(f"no shipped checkpoint '{text}'; shipped: {names}")
    path = Path(path)
    return path / "checkpoint.pt" if path.is_dir() else path


def _plain_name(name: str) -> bool:
    """A file name that stays in its folder: no path separator, not '', '.' or '..'."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _device(name: str) -> torch.device:
    """``resolve_device``, and one line for a device type mbiapo does not run on (meta,
    mps...), rather than a load error blamed on the checkpoint."""
    device = resolve_device(name)
    if device.type not in ("cpu", "cuda"):
        raise MbiapoError(f"device '{name}' is not supported; use cpu, cuda or cuda:N")
    return device


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    """The raw payload; one clear MbiapoError for a missing, corrupt or foreign file."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise MbiapoError(f"checkpoint not found: {path}")
    device = _device(device)  # a device this machine lacks is one line, not a load error
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch.load raises many types on foreign or truncated files
        raise MbiapoError(f"{path}: not a readable mbiapo checkpoint, truncated or corrupt "
                          f"({_first_sentence(e)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MbiapoError(f"{path}: not an mbiapo checkpoint")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise MbiapoError(f"{path}: checkpoint format {payload['format_version']} is newer "
                          f"than this mbiapo supports ({FORMAT_VERSION}); upgrade mbiapo")
    payload["path"] = str(path)
    if payload.get("format_version", 0) < 2:
        _upgrade_from_v1(payload)
    if payload.get("format_version", 0) < 4:
        _upgrade_to_v4(payload)
    return payload


def _upgrade_to_v4(payload: dict) -> None:
    """Format 2-3 world model and rollout policy -> the model-based estimator's modules, in
    place: ``model.X`` -> ``estimator.model.X`` (likewise ``rollout.``), and the one model's
    log-stds (S,) and () -> (1, S) and (1,), with the ensemble's buffers for one member
    (its elite, its held-out error). Optimizer states follow their parameters by
    position, and take their shapes when loaded (``_reshape_states``)."""
    renamed = {}
    for name, tensor in payload["agent"].items():
        if name.startswith(("model.", "rollout.")):
            if name in ("model.dynamics_log_std", "model.reward_log_std"):
                tensor = tensor.reshape(1, *tensor.shape)
            name = f"estimator.{name}"
        renamed[name] = tensor
    if "estimator.model.nets.0.weight" in renamed:  # the ensemble's new state, for E = 1
        renamed |= {"estimator.model.elites": torch.zeros(1, dtype=torch.long),
                    "estimator.heldout_error": torch.zeros(1),
                    "estimator.heldout_weight": torch.zeros(())}
    payload["agent"] = renamed
    if "v1_sources" in payload:
        payload["v1_sources"] = {(f"estimator.{k}" if k.startswith(("model.", "rollout."))
                                  else k): v for k, v in payload["v1_sources"].items()}


def _reshape_states(agent: Agent) -> None:
    """Optimizer moments saved for a parameter of another shape but the same size (format
    3's log-stds) take the parameter's shape."""
    for opt in agent.optimizers().values():
        for p, state in opt.state.items():
            for key, value in state.items():
                if key != "step" and torch.is_tensor(value) and value.shape != p.shape \
                        and value.numel() == p.numel():
                    state[key] = value.reshape(p.shape)


def _first_sentence(e: Exception) -> str:
    """The first sentence of an exception's message (torch's run on for lines)."""
    text = " ".join(str(e).split()) or type(e).__name__
    end = text.find(". ")
    return (text if end < 0 else text[:end]).rstrip(".")[:200]


# format 1 -> 2: (pattern, replacement) of parameter names; the old networks were ReLU MLPs
# without layer norm (Q nets and trunks: linear i at module 2i) and the world model one with
# (linear i at module 3i, its norm at 3i + 1)
_V1_RENAMES = [
    (r"^(q|q_target)\.w(\d+)$", lambda m: f"{m[1]}.net.{2 * int(m[2])}.weight"),
    (r"^(q|q_target)\.b(\d+)$", lambda m: f"{m[1]}.net.{2 * int(m[2])}.bias"),
    (r"^planner\.net\.trunk\.0\.(\d+)\.", lambda m: f"planner.net.trunk.{m[1]}."),
    (r"^model\.weights\.(\d+)$", lambda m: f"model.nets.{3 * int(m[1])}.weight"),
    (r"^model\.biases\.(\d+)$", lambda m: f"model.nets.{3 * int(m[1])}.bias"),
]


def _upgrade_from_v1(payload: dict) -> None:
    """Rename a format-1 payload's parameters to format 2, in place, recording where each
    came from for the optimizer states (``_upgrade_optimizer_state``). The world model's
    stacked norm parameters (L, 3, 1, H) become one (3, 1, H) per layer."""
    old = payload["agent"]
    new: dict = {}
    sources: dict[str, tuple[str, int | None]] = {}  # new name -> (old name, index or None)
    for name, tensor in old.items():
        norm = re.match(r"^model\.norm_(weight|bias)$", name)
        if norm:
            for i in range(tensor.shape[0]):
                key = f"model.nets.{3 * i + 1}.{norm[1]}"
                new[key], sources[key] = tensor[i].clone(), (name, i)
            continue
        key = name
        for pattern, rename in _V1_RENAMES:
            key = re.sub(pattern, rename, key)
        new[key], sources[key] = tensor, (name, None)
    payload["agent"] = new
    payload["v1_sources"], payload["v1_keys"] = sources, list(old)
    value, planner = payload["config"]["value"], payload["config"]["planner"]
    # format 1's rollout policy had the planner's size
    value.setdefault("rollout_hidden", planner.get("hidden", 256))
    value.setdefault("rollout_layers", planner.get("layers", 2))


def _upgrade_optimizer_state(agent: Agent, payload: dict) -> dict:
    """Format-1 optimizer states re-indexed for format 2's parameters: each takes the Adam
    state of the tensor it came from (its slice, for the world model's split norms). Format
    1 indexed states by parameter order, the order of the old state dict's keys."""
    sources, old_keys = payload["v1_sources"], payload["v1_keys"]
    names = {id(p): n for n, p in agent.named_parameters()}
    states = {}
    for opt_name, opt in agent.optimizers().items():
        saved = payload["optimizers"][opt_name]
        params = [p for group in opt.param_groups for p in group["params"]]
        used = {sources[names[id(p)]][0] for p in params}
        old_index = {n: i for i, n in enumerate(n for n in old_keys if n in used)}
        state, groups, k = {}, [], 0
        for saved_group, group in zip(saved["param_groups"], opt.param_groups):
            groups.append({**saved_group, "params": list(range(k, k + len(group["params"])))})
            for p in group["params"]:
                source, part = sources[names[id(p)]]
                entry = saved["state"].get(old_index[source])
                if entry is not None:
                    state[k] = {key: v[part].clone() if part is not None and v.dim() else v
                                for key, v in entry.items()}
                k += 1
        states[opt_name] = {"state": state, "param_groups": groups}
    return states


def load_agent(path: str | Path, device: str = "cpu") -> tuple[Agent, dict]:
    """Rebuild the agent (modules and optimizers) from a checkpoint."""
    payload = read_checkpoint(path, device)
    cfg = from_container({**payload["config"], "plugins": payload.get("plugins")},
                         payload["path"])
    cfg.train.device = device
    agent = Agent(cfg, payload["obs_dim"], payload["act_dim"])
    try:
        agent.load_state_dict(payload["agent"])
        optimizers = payload["optimizers"]
        if "v1_sources" in payload:
            optimizers = _upgrade_optimizer_state(agent, payload)
        agent.load_optimizer_state(optimizers)
        _reshape_states(agent)
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
