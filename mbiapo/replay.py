"""Replay buffer: preallocated numpy arrays, saved as a D4RL-layout HDF5 file.

Transitions are stored with their own next observation, so terminal observations are real
(never zeros) and episode boundaries need no bookkeeping. ``terminals`` marks true
terminations (bootstrapping stops); ``timeouts`` marks truncations (it does not).
"""

from pathlib import Path

import h5py
import numpy as np
import torch

from mbiapo.datasets import FIELDS, Dataset, write_d4rl
from mbiapo.errors import MbiapoError
from mbiapo.paths import temporary, written

FORMAT_VERSION = 1
HOLDOUT_EVERY = 10  # every 10th slot is held out from model training (model_weight 0)


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int):
        self.capacity = capacity
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.data = {
            "observations": np.zeros((capacity, obs_dim), np.float32),
            "actions": np.zeros((capacity, act_dim), np.float32),
            "rewards": np.zeros(capacity, np.float32),
            "next_observations": np.zeros((capacity, obs_dim), np.float32),
            "terminals": np.zeros(capacity, bool),
            "timeouts": np.zeros(capacity, bool),
        }
        self.ptr = 0  # next write position
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, terminated: bool, truncated: bool) -> None:
        i = self.ptr
        d = self.data
        d["observations"][i] = obs
        d["actions"][i] = action
        d["rewards"][i] = reward
        d["next_observations"][i] = next_obs
        d["terminals"][i] = terminated
        d["timeouts"][i] = truncated
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator,
               device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Uniform batch: obs (B, S), act (B, A), rew (B,), next_obs (B, S), done (B,) float,
        and model_weight (B,): 0 for slots held out from model training, else 1."""
        return self._rows(rng.integers(0, self.size, batch_size), device)

    def holdout(self, n: int = 2000, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Up to ``n`` of the transitions held out from model training (the last slots)."""
        return self._rows(np.arange(0, self.size, HOLDOUT_EVERY)[-n:], device)

    def _rows(self, idx: np.ndarray, device: torch.device | str) -> dict[str, torch.Tensor]:
        d = self.data
        batch = {
            "obs": d["observations"][idx], "act": d["actions"][idx],
            "rew": d["rewards"][idx], "next_obs": d["next_observations"][idx],
            "done": d["terminals"][idx].astype(np.float32),
            "model_weight": (idx % HOLDOUT_EVERY != 0).astype(np.float32),
        }
        return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}

    def chronological(self, name: str) -> np.ndarray:
        """One field in insertion order (oldest first): (size, ...)."""
        arr = self.data[name]
        if self.size < self.capacity:
            return arr[: self.size]
        return np.concatenate([arr[self.ptr:], arr[: self.ptr]])

    @classmethod
    def from_dataset(cls, data: Dataset) -> "ReplayBuffer":
        """A full buffer holding a dataset's arrays (shared, not copied); its actions must
        already be in [-1, 1] (``datasets.read_for``)."""
        if not data.actions_normalized:
            raise ValueError("normalize the dataset's actions first")
        buf = cls.__new__(cls)
        buf.obs_dim, buf.act_dim = data.obs_dim, data.act_dim
        buf.capacity = buf.size = len(data)
        buf.ptr = 0
        buf.data = {name: data.arrays[name] for name in FIELDS}
        return buf

    def save(self, path: str | Path, metadata: dict[str, str | int | float]) -> None:
        """Atomic write of the D4RL layout plus ``metadata/*`` (env id, format version, and
        actions "normalized": the agent's [-1, 1] units). A failed write (a full disk) is one
        MbiapoError line and leaves no temporary file."""
        path = Path(path)
        with written(path, temporary(path)):  # write_d4rl's temporary file
            write_d4rl(path, {name: self.chronological(name) for name in FIELDS},
                       {"format_version": FORMAT_VERSION, "capacity": self.capacity,
                        "ring_position": self.ptr, "actions": "normalized", **metadata})

    @classmethod
    def load(cls, path: str | Path, capacity: int | None = None) -> "ReplayBuffer":
        """Inverse of ``save``: same arrays at the same ring positions."""
        try:
            with h5py.File(path, "r") as f:
                missing = [n for n in FIELDS if n not in f]
                if missing:
                    raise MbiapoError(f"{path}: not a replay file, missing {', '.join(missing)}")
                n, obs_dim = f["observations"].shape
                act_dim = f["actions"].shape[1]
                meta = f.get("metadata", {})
                saved_capacity = int(meta["capacity"][()]) if "capacity" in meta else n
                buf = cls(obs_dim, act_dim, max(capacity or saved_capacity, n))
                full = n == buf.capacity
                ptr = int(meta["ring_position"][()]) % buf.capacity if full else n
                for name in FIELDS:
                    values = f[name][()]
                    if len(values) != n:
                        raise MbiapoError(f"{path}: '{name}' has {len(values)} rows, expected {n}")
                    buf.data[name][:n] = np.roll(values, ptr, axis=0) if full else values
        except MbiapoError:
            raise
        except Exception as e:  # h5py raises KeyError, RuntimeError... on a damaged file
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise MbiapoError(f"{path}: cannot read replay data ({reason})") from None
        buf.size, buf.ptr = n, ptr % buf.capacity
        return buf
