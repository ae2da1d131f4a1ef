"""Offline datasets: readers for the D4RL flat layout, the Minari layout and mbiapo's own
files, one writer (the D4RL layout), and the validation every command gets through them.

Arrays are read chunk by chunk straight into preallocated float32/bool arrays (no Python
lists of transitions), and a file is only ever opened read-only. Observations, actions or
rewards stored as integers are converted to float32; ``Dataset.converted`` records it and
``mbiapo dataset info`` shows it. Actions are stored in the
environment's own units (as D4RL and Minari do) unless ``metadata/actions`` says
"normalized" (mbiapo's replay files: the agent's [-1, 1] units); ``normalized_actions``
maps them to [-1, 1] given the environment's bounds.
"""

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from mbiapo.errors import MbiapoError

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
D4RL_REQUIRED = ("observations", "actions", "rewards", "terminals")
MINARI_FIELDS = ("observations", "actions", "rewards", "terminations", "truncations")
CHUNK = 1 << 17  # rows per read


@dataclass
class Dataset:
    """N transitions: observations, next_observations (N, S) and actions (N, A) float32,
    rewards (N,) float32, terminals and timeouts (N,) bool; where they came from."""

    path: Path
    layout: str  # "d4rl", "minari" or "mbiapo"
    arrays: dict[str, np.ndarray]
    env_id: str | None = None
    actions_normalized: bool = False
    metadata: dict = field(default_factory=dict)
    reconstructed_next: bool = False  # next_observations rebuilt from observations[i + 1]
    dropped: int = 0  # rows without a next observation (truncated episode ends)
    returns: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per episode, as read
    converted: dict[str, str] = field(default_factory=dict)  # field -> its integer dtype

    def __post_init__(self):
        if not len(self.returns):
            self.returns = episode_returns(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays["rewards"])

    @property
    def obs_dim(self) -> int:
        return self.arrays["observations"].shape[1]

    @property
    def act_dim(self) -> int:
        return self.arrays["actions"].shape[1]



def episode_returns(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Undiscounted return of each episode (the last one may be unfinished)."""
    n = len(arrays["rewards"])
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    if len(ends) == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)
    return np.diff(np.cumsum(arrays["rewards"], dtype=np.float64)[ends], prepend=0.0)


def _fail(path: Path, problem: str) -> MbiapoError:
    return MbiapoError(f"{path}: {problem}")


def dataset_file(path: str | Path) -> Path:
    """The HDF5 file of a dataset: ``path`` itself, or a Minari folder's main_data.hdf5."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "data" / "main_data.hdf5", path / "main_data.hdf5"):
            if candidate.is_file():
                return candidate
        raise _fail(path, "a folder, but no Minari data/main_data.hdf5 in it")
    if not path.is_file():
        raise MbiapoError(f"dataset not found: {path}")
    return path


def read_dataset(path: str | Path) -> Dataset:
    """Detect the layout of a file (or a Minari dataset folder) and read it, validated."""
    return _read_file(dataset_file(path))


def _read_file(path: Path) -> Dataset:
    """Open ``path`` read-only and read its layout. A damaged file makes h5py (or numpy)
    raise OSError, KeyError, RuntimeError, TypeError, ValueError...: any of them becomes one
    MbiapoError naming the file."""
    try:
        with h5py.File(path, "r") as f:
            return _read_layout(path, f)
    except MbiapoError:
        raise
    except Exception as e:  # h5py raises many types on damaged files
        raise _fail(path, f"not a readable HDF5 file ({_reason(e)})") from None


def _reason(error: Exception) -> str:
    """The first line of an error's message (its type when the message is empty)."""
    keyed = isinstance(error, KeyError) and error.args  # str(KeyError) quotes its message
    lines = str(error.args[0] if keyed else error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _read_layout(path: Path, f: h5py.File) -> Dataset:
    """The D4RL layout (an ``observations`` array at the root) or the Minari one."""
    if isinstance(f.get("observations"), h5py.Dataset):
        return _read_d4rl(path, f)
    if any(re.fullmatch(r"episode_\d+", k) for k in f):
        return _read_minari(path, f)
    raise _fail(path, "neither the D4RL layout (observations, actions, rewards, "
                "terminals) nor the Minari layout (episode_* groups)")


def _read_into(path: Path, ds: h5py.Dataset, out: np.ndarray, name: str,
               offset: int = 0) -> None:
    """Copy ``ds`` into ``out[offset:]`` chunk by chunk (converting dtype and (N, 1) shapes),
    checking every chunk: flags (a bool ``out``) must be 0 or 1, values finite."""
    n = ds.shape[0]
    for start in range(0, n, CHUNK):
        chunk = ds[start:start + CHUNK]
        target = out[offset + start: offset + start + len(chunk)]
        if target.dtype == bool:
            _check_flags(path, chunk.reshape(target.shape), name, start)
        with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, refused below
            target[...] = chunk.reshape(target.shape)
        if target.dtype.kind == "f" and not np.isfinite(target).all():
            row = start + int(np.argmin(np.isfinite(target).reshape(len(target), -1).all(1)))
            raise _fail(path, f"'{name}' holds NaN or inf (row {row})")


def _check_flags(path: Path, chunk: np.ndarray, name: str, start: int) -> None:
    """Terminals and timeouts (a chunk of shape (n,) from row ``start``) must be booleans or
    0/1: anything else, NaN included, would silently read as True."""
    bad = np.flatnonzero((chunk != 0) & (chunk != 1))
    if len(bad):
        raise _fail(path, f"'{name}' holds {chunk[bad[0]]} (row {start + int(bad[0])}), "
                    f"expected 0 or 1")


def _vector_rows(path: Path, ds: h5py.Dataset, name: str) -> tuple[int, int]:
    """(rows, width) of an (N, D) dataset; (N,) counts as width 1."""
    _check_dataset(path, ds, name)
    if ds.ndim == 1:
        return ds.shape[0], 1
    if ds.ndim == 2:
        return ds.shape
    raise _fail(path, f"'{name}' has shape {ds.shape}, expected (N, D) (flat Box spaces only)")


def _check_dataset(path: Path, item, name: str) -> None:
    if not isinstance(item, h5py.Dataset):
        raise _fail(path, f"'{name}' is a group, expected an array (flat Box spaces only)")


def _scalar_rows(path: Path, ds: h5py.Dataset, name: str) -> int:
    _check_dataset(path, ds, name)
    if ds.ndim == 1 or (ds.ndim == 2 and ds.shape[1] == 1):
        return ds.shape[0]
    raise _fail(path, f"'{name}' has shape {ds.shape}, expected (N,) or (N, 1)")


def _read_metadata(group) -> dict:
    """{name: value} of the small (at most 64 values) numbers and strings in ``group``;
    other types are skipped (HDF5 can crash on a damaged variable-length sequence)."""
    meta = {}
    for key, item in (group.items() if group is not None else ()):
        if isinstance(item, h5py.Dataset) and item.size <= 64 and _plain(item.dtype):
            value = item[()]
            meta[key] = value.decode() if isinstance(value, bytes) else (
                value.item() if isinstance(value, np.generic) else value)
    return meta


def _plain(dtype: np.dtype) -> bool:
    """Booleans, numbers or strings (fixed or variable length)."""
    return dtype.kind in "biuf" or h5py.check_string_dtype(dtype) is not None


def _read_d4rl(path: Path, f: h5py.File) -> Dataset:
    missing = [k for k in D4RL_REQUIRED if k not in f]
    if missing:
        raise _fail(path, f"missing required key(s) {', '.join(missing)} (D4RL layout)")
    n, obs_dim = _vector_rows(path, f["observations"], "observations")
    _, act_dim = _vector_rows(path, f["actions"], "actions")
    has_next = "next_observations" in f
    rows = {"actions": _vector_rows(path, f["actions"], "actions")[0]}
    for name in ("rewards", "terminals", "timeouts"):
        if name in f:
            rows[name] = _scalar_rows(path, f[name], name)
    if has_next:
        rows["next_observations"], next_dim = _vector_rows(path, f["next_observations"],
                                                           "next_observations")
        if next_dim != obs_dim:
            raise _fail(path, f"'next_observations' has {next_dim} columns, 'observations' "
                        f"{obs_dim}")
    for name, count in rows.items():
        if count != n:
            raise _fail(path, f"'{name}' has {count} rows, 'observations' has {n}")
    if n == 0:
        raise _fail(path, "holds no transitions")
    arrays = _allocate(n, obs_dim, act_dim)
    for name in ("observations", "actions", "rewards", "terminals", "timeouts",
                 "next_observations"):
        if name in f:
            _read_into(path, f[name], arrays[name], name)
    meta = _read_metadata(f.get("metadata"))
    normalized = meta.get("actions") == "normalized" or "ring_position" in meta
    layout = "mbiapo" if "ring_position" in meta or "source" in meta else "d4rl"
    env_id = _env_id(path, meta.get("env_id"), "metadata/env_id")
    data = Dataset(path, layout, arrays, env_id, normalized, meta,
                   returns=episode_returns(arrays), converted=_integer_fields(f, ""))
    if not has_next:
        _rebuild_next(data)
    return data


def _rebuild_next(data: Dataset) -> None:
    """next_observations[i] = observations[i + 1] inside an episode. A terminal row keeps its
    own observation (its next one is never used: bootstrapping stops); rows that end an episode
    by time limit, and a last row that ends nothing, have no next observation and are dropped.
    The row before a dropped time-limit row then ends its episode as a truncation (its next
    observation is real), so episodes keep their boundaries."""
    a = data.arrays
    n = len(data)
    a["next_observations"][:-1] = a["observations"][1:]
    a["next_observations"][-1] = a["observations"][-1]
    terminal, timeouts = a["terminals"], a["timeouts"]
    a["next_observations"][terminal] = a["observations"][terminal]
    keep = ~timeouts
    keep[-1] &= terminal[-1]
    cut = np.flatnonzero(timeouts[1:] & ~terminal[1:]) + 1  # dropped time-limit rows
    cut = cut[~(terminal[cut - 1] | timeouts[cut - 1])]  # whose episode goes on before them
    timeouts[cut - 1] = True
    data.reconstructed_next, data.dropped = True, int(n - keep.sum())
    if data.dropped:
        if data.dropped == n:
            raise _fail(data.path, "no transition has a next observation")
        for name in FIELDS:
            a[name] = a[name][keep]


def _allocate(n: int, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    return {"observations": np.empty((n, obs_dim), np.float32),
            "actions": np.empty((n, act_dim), np.float32),
            "rewards": np.empty(n, np.float32),
            "next_observations": np.empty((n, obs_dim), np.float32),
            "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}


def _env_id(path: Path, value, where: str) -> str | None:
    """The environment id a dataset records at ``where`` (None: none): it must be a string."""
    if value is None or isinstance(value, str):
        return value
    shown = " ".join(str(value).split())[:40]
    raise _fail(path, f"{where} is {shown} ({type(value).__name__}), expected an "
                f"environment id (a string)")


def _minari_metadata(path: Path, f: h5py.File) -> dict:
    """The dataset's metadata.json beside ``path`` (or, older Minari versions, the root
    attributes of ``f``), with ``env_id`` (str or None) taken from its env_spec."""
    meta_file = path.parent / "metadata.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
        except ValueError as e:
            raise _fail(meta_file, f"not valid JSON ({e})") from None
        if not isinstance(meta, dict):
            raise _fail(meta_file, "expected a JSON object")
        source = meta_file
    else:  # older Minari versions keep it in the root attributes
        meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        source = path
    spec = meta.get("env_spec")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            spec = None
    if isinstance(spec, dict):
        meta["env_id"] = _env_id(source, spec.get("id"), "env_spec id")
    else:
        meta["env_id"] = _env_id(source, meta.get("env_id"), "env_id")
    return meta


def _read_minari(path: Path, f: h5py.File) -> Dataset:
    names = sorted((k for k in f if re.fullmatch(r"episode_\d+", k)),
                   key=lambda k: int(k.split("_")[1]))
    lengths, dims = [], None
    for name in names:
        ep = f[name]
        missing = [k for k in MINARI_FIELDS if k not in ep]
        if missing:
            raise _fail(path, f"{name} is missing {', '.join(missing)} (Minari layout)")
        if not isinstance(ep["observations"], h5py.Dataset):
            raise _fail(path, f"{name}/observations is a group (dict observations are not "
                        f"supported; flat Box spaces only)")
        steps, obs_dim = _vector_rows(path, ep["observations"], f"{name}/observations")
        t, act_dim = _vector_rows(path, ep["actions"], f"{name}/actions")
        if steps != t + 1:
            raise _fail(path, f"{name} has {steps} observations for {t} actions (expected "
                        f"T + 1 observations)")
        for key in ("rewards", "terminations", "truncations"):
            if _scalar_rows(path, ep[key], f"{name}/{key}") != t:
                raise _fail(path, f"{name}/{key} has {ep[key].shape[0]} rows, expected {t}")
        if dims not in (None, (obs_dim, act_dim)):
            raise _fail(path, f"{name} has observation/action sizes {obs_dim}/{act_dim}, "
                        f"earlier episodes {dims[0]}/{dims[1]}")
        dims = (obs_dim, act_dim)
        lengths.append(t)
    n = sum(lengths)
    if n == 0:
        raise _fail(path, "holds no transitions")
    arrays = _allocate(n, *dims)
    offset = 0
    for name, t in zip(names, lengths):
        ep = f[name]
        observations = np.empty((t + 1, dims[0]), np.float32)
        _read_into(path, ep["observations"], observations, f"{name}/observations")
        arrays["observations"][offset:offset + t] = observations[:-1]
        arrays["next_observations"][offset:offset + t] = observations[1:]
        for src, dst in (("actions", "actions"), ("rewards", "rewards"),
                         ("terminations", "terminals"), ("truncations", "timeouts")):
            _read_into(path, ep[src], arrays[dst], f"{name}/{src}", offset)
        offset += t
    meta = _minari_metadata(path, f)
    converted = {}
    for name in names:
        converted |= _integer_fields(f, f"{name}/")
    return Dataset(path, "minari", arrays, meta.get("env_id"), False, meta,
                   converted=converted)


def _integer_fields(f: h5py.File, prefix: str) -> dict[str, str]:
    """{field: dtype} of the real-valued fields stored as integers (or bools) under
    ``prefix``: they are read as float32, and ``dataset info`` says so."""
    found = {}
    for name in ("observations", "actions", "rewards", "next_observations"):
        item = f.get(prefix + name)
        if isinstance(item, h5py.Dataset) and item.dtype.kind in "iub":
            found[name] = str(item.dtype)
    return found


def normalized_actions(data: Dataset, low: np.ndarray | None, high: np.ndarray | None) -> None:
    """Map the dataset's actions to [-1, 1] in place, after checking they lie in the action
    space [low, high] (the env's bounds; None: unknown, so they must already lie in [-1, 1])."""
    actions = data.arrays["actions"]
    if data.actions_normalized or low is None:
        low, high, units = -np.ones(data.act_dim), np.ones(data.act_dim), "[-1, 1]"
    else:
        units = f"the action space [{_fmt(low)}, {_fmt(high)}]"
    tol = 1e-5 * np.maximum(1.0, np.abs(high - low))
    bad = (actions < low - tol) | (actions > high + tol)
    if bad.any():
        row = int(np.flatnonzero(bad.any(1))[0])
        hint = "" if units != "[-1, 1]" or data.actions_normalized else (
            "; pass --env ENV so that they can be rescaled from its action space")
        raise _fail(data.path, f"actions outside {units} (row {row}: "
                    f"{_fmt(actions[row])}){hint}")
    if not data.actions_normalized and units != "[-1, 1]":
        actions -= (low + high) / 2
        actions *= 2 / (high - low)
        np.clip(actions, -1.0, 1.0, out=actions)
    data.actions_normalized = True


def _fmt(values: np.ndarray) -> str:
    values = np.asarray(values).ravel()
    text = ", ".join(f"{v:.3g}" for v in values[:6])
    return text + (", ..." if len(values) > 6 else "")


def check_sizes(data: Dataset, obs_dim: int, act_dim: int, what: str) -> None:
    if (data.obs_dim, data.act_dim) != (obs_dim, act_dim):
        raise _fail(data.path, f"observation/action sizes {data.obs_dim}/{data.act_dim} do "
                    f"not match {what}'s {obs_dim}/{act_dim}")


def write_d4rl(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """Atomic write (temporary file + rename) of the D4RL layout plus ``metadata/*``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for name in FIELDS:
            f.create_dataset(name, data=arrays[name])
        meta = f.create_group("metadata")
        for key, value in metadata.items():
            meta[key] = value
    os.replace(tmp, path)


def read_for(path: str | Path, env_id: str | None, obs_dim: int, act_dim: int,
             what: str) -> Dataset:
    """Read a dataset for an agent of ``what`` (e.g. "the checkpoint") on ``env_id`` with the
    given sizes: the env must match the dataset's (if it names one), and the actions are
    checked against the env's action space and mapped to [-1, 1]."""
    data = read_dataset(path)
    if data.env_id and env_id and data.env_id != env_id:
        raise _fail(data.path, f"recorded on {data.env_id}, but {what} is for {env_id}")
    fit_to_env(data, env_id or data.env_id, what, (obs_dim, act_dim))
    return data


def fit_to_env(data: Dataset, env_id: str | None, what: str,
               dims: tuple[int, int] | None = None) -> None:
    """Check the dataset's sizes against ``dims`` (default: the env's) and its actions against
    the env's action space, then map them to [-1, 1]. Without an env the actions must already
    lie in [-1, 1]."""
    from mbiapo.envs import action_bounds, env_dims, make_env

    if env_id and dims is None:
        env = make_env(env_id)
        dims = env_dims(env)
        env.close()
    if dims is not None:
        check_sizes(data, *dims, what)
    normalized_actions(data, *(action_bounds(env_id) if env_id else (None, None)))
