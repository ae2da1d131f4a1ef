"""Offline datasets end to end: ``mbiapo collect`` round trips, D4RL and Minari files written
here with plain h5py, every validation error as one CLI error line (exit code 2), files never
modified by reading, and ``mbiapo train --offline`` (with and without an env, model-based,
resumed). Everything runs in-process on tiny untrained checkpoints."""

import csv
import json
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

from mbiapo.agent import Agent
from mbiapo.checkpoint import read_checkpoint, save_checkpoint
from mbiapo.cli import main
from mbiapo.datasets import FIELDS, normalized_actions, read_dataset, read_for
from mbiapo.envs import action_bounds, make_env
from mbiapo.errors import MbiapoError
from mbiapo.replay import ReplayBuffer
from tests.helpers import error_line, run_cli, tiny_config

IP = "InvertedPendulum-v5"  # |S| = 4, |A| = 1, actions in [-3, 3]
TRAIN = ["planner.hidden=32", "value.hidden=32", "train.batch_size=32", "train.eval_every=15",
         "train.eval_episodes=1", "env.max_episode_steps=20"]


def _ok_json(capsys, *argv) -> tuple[dict, str]:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out), err


def _write(path: Path, entries: dict, compression: str | None = None) -> Path:
    """An HDF5 file of datasets (values) and groups (dict values), written with plain h5py."""
    def fill(group, items):
        for name, value in items.items():
            if isinstance(value, dict):
                fill(group.create_group(name), value)
            elif isinstance(value, str | bytes | int | float):
                group[name] = value
            else:
                group.create_dataset(name, data=value, compression=compression)

    with h5py.File(path, "w") as f:
        fill(f, entries)
    return path


def _d4rl(n: int = 10, obs_dim: int = 4, act_dim: int = 1, seed: int = 0, **changes) -> dict:
    """A valid D4RL-layout dict (actions in [-1, 1], no env): one episode ending in a
    terminal on the last row; ``changes`` replace or (None) remove entries."""
    rng = np.random.default_rng(seed)
    terminals = np.zeros(n, bool)
    terminals[-1] = True
    entries = {"observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
               "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
               "rewards": rng.normal(size=n).astype(np.float32),
               "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
               "terminals": terminals, "timeouts": np.zeros(n, bool)}
    entries.update(changes)
    return {k: v for k, v in entries.items() if v is not None}


def _file_arrays(path: Path) -> tuple[dict, dict]:
    with h5py.File(path, "r") as f:
        arrays = {name: f[name][()] for name in FIELDS}
        meta = {k: v[()] for k, v in f["metadata"].items()}
    return arrays, meta


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def _metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def ckpt(root) -> Path:
    """A tiny untrained model-free InvertedPendulum-v5 checkpoint (planner direct)."""
    torch.manual_seed(0)
    path = root / "ip.pt"
    save_checkpoint(path, Agent(tiny_config(), 4, 1), {"step": 0})
    return path


@pytest.fixture(scope="module")
def collected(root, ckpt) -> Path:
    out = root / "collected.h5"
    assert main(["collect", "--checkpoint", str(ckpt), "--planner", "direct", "--episodes", "2",
                 "--noise", "0.3", "--out", str(out), "--json"]) == 0
    return out


@pytest.fixture(scope="module")
def random_ip(root) -> Path:
    """A random-policy InvertedPendulum file big enough for 32-row batches."""
    out = root / "random_ip.h5"
    assert main(["collect", "--random", "--env", IP, "--episodes", "8", "--out",
                 str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def no_env(root) -> Path:
    """A D4RL file with no metadata at all, actions in [-1, 1]: nothing names an env."""
    return _write(root / "no_env.h5", _d4rl(n=80, seed=3))


@pytest.fixture(scope="module")
def offline_run(root, random_ip) -> Path:
    out = root / "offline_run"
    assert main(["train", "--offline", str(random_ip), "--planner", "direct", "--steps", "30",
                 "--out", str(out), *TRAIN]) == 0
    return out


# ----------------------------------------------------------------------- 1. round trips
def _check_round_trip(path: Path, env_id: str, episodes: int, max_steps: int | None) -> None:
    written, meta = _file_arrays(path)
    data = read_dataset(path)
    assert data.env_id == env_id and data.path == path
    assert not data.reconstructed_next and data.dropped == 0 and not data.actions_normalized
    for name in FIELDS:
        assert data.arrays[name].dtype == written[name].dtype, name
        np.testing.assert_array_equal(data.arrays[name], written[name], err_msg=name)
    assert meta["env_id"].decode() == env_id and meta["actions"] == b"env units"
    ends = np.flatnonzero(written["terminals"] | written["timeouts"])
    assert len(ends) == episodes and ends[-1] == len(data) - 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    inside = np.setdiff1d(np.arange(len(data)), ends)
    np.testing.assert_array_equal(written["next_observations"][inside],
                                  written["observations"][inside + 1])
    env = make_env(env_id, max_steps)
    for i, start in enumerate(starts):  # episode i starts from reset(seed=i)
        np.testing.assert_array_equal(written["observations"][start],
                                      env.reset(seed=i)[0].astype(np.float32))
    env.close()
    low, high = action_bounds(env_id)
    assert (written["actions"] >= low - 1e-6).all() and (written["actions"] <= high + 1e-6).all()
    normalized_actions(data, low, high)
    assert data.actions_normalized
    np.testing.assert_allclose(data.arrays["actions"],
                               (written["actions"] - (low + high) / 2) * 2 / (high - low),
                               rtol=1e-6, atol=1e-7)


def test_collect_round_trip_with_checkpoint(collected):
    path = collected
    _check_round_trip(path, IP, 2, 50)
    written, meta = _file_arrays(path)
    data = read_dataset(path)
    normalized_actions(data, *action_bounds(IP))
    np.testing.assert_allclose(data.arrays["actions"], written["actions"] / 3, rtol=1e-6)
    assert np.abs(written["actions"]).max() > 1.0  # really in the env's units, not [-1, 1]
    assert b"planner direct" in meta["policy"] and meta["episodes"] == 2


def test_collect_actions_replay_the_recorded_episode(collected):
    """The stored actions, fed in the env's own units to the unwrapped-action env, replay the
    first episode's observations and rewards."""
    written, _ = _file_arrays(collected)
    env = gym.make(IP, max_episode_steps=50)
    obs, _ = env.reset(seed=0)
    i = 0
    while True:
        np.testing.assert_allclose(obs, written["observations"][i], atol=1e-4)
        obs, reward, terminated, truncated, _ = env.step(written["actions"][i])
        np.testing.assert_allclose(obs, written["next_observations"][i], atol=1e-4)
        assert reward == pytest.approx(written["rewards"][i])
        assert (terminated, truncated) == (written["terminals"][i], written["timeouts"][i])
        i += 1
        if terminated or truncated:
            break
    env.close()


def test_collect_random_hopper_without_checkpoint(root, capsys):
    out = root / "hopper.h5"
    result, _ = _ok_json(capsys, "collect", "--random", "--env", "Hopper-v5", "--episodes", "2",
                         "--out", out)
    _check_round_trip(out, "Hopper-v5", 2, None)
    written, meta = _file_arrays(out)
    assert written["observations"].shape[1] == 11 and written["actions"].shape[1] == 3
    assert meta["policy"] == b"uniform random actions"
    assert result["transitions"] == len(written["rewards"]) and result["episodes"] == 2
    assert result["env"] == "Hopper-v5"
    assert result["return_mean"] == pytest.approx(written["rewards"].sum() / 2, rel=1e-5)
    info, _ = _ok_json(capsys, "dataset", "info", out)
    assert info["validation"] == "ok against Hopper-v5"
    assert (info["transitions"], info["episodes"]) == (len(written["rewards"]), 2)
    assert (info["obs_dim"], info["act_dim"], info["env_id"]) == (11, 3, "Hopper-v5")


def test_collect_refuses_to_overwrite_and_needs_a_policy(root, random_ip, capsys):
    before = _snapshot(random_ip)
    line = error_line(capsys, "collect", "--random", "--env", IP, "--episodes", "1",
                       "--out", random_ip)
    assert str(random_ip) in line and "--force" in line
    assert _snapshot(random_ip) == before
    line = error_line(capsys, "collect", "--episodes", "1", "--out", root / "nothing.h5")
    assert "--checkpoint" in line and not (root / "nothing.h5").exists()


def test_dataset_info_on_a_collected_file(collected, capsys):
    path = collected
    written, _ = _file_arrays(path)
    info, _ = _ok_json(capsys, "dataset", "info", path)
    returns = [r.sum() for r in np.split(written["rewards"], np.flatnonzero(
        written["terminals"] | written["timeouts"])[:-1] + 1)]
    assert info["env_id"] == IP and info["validation"] == f"ok against {IP}"
    assert info["transitions"] == len(written["rewards"]) and info["episodes"] == 2
    assert info["return_mean"] == pytest.approx(np.mean(returns), rel=1e-5)
    assert info["terminations"] == written["terminals"].sum()
    assert info["truncations"] == written["timeouts"].sum()
    assert info["next_observations"] == "stored" and info["dropped_rows"] == 0


# ------------------------------------------------------------------------ 2. D4RL layout
# Three episodes in 12 rows: 0-3 ends in a terminal, 4-7 by time limit (when the file has
# timeouts), 8-11 ends nothing (the data stops mid-episode).
N = 12
TERMINAL, TIMEOUT = 3, 7
ENCODINGS = {  # float dtype, rewards shape, compression, extra infos/ and metadata/ groups
    "f32-flat-plain": (np.float32, (N,), None, False),
    "f64-column-gzip-extras": (np.float64, (N, 1), "gzip", True),
    "f64-flat-gzip": (np.float64, (N,), "gzip", False),
    "f32-column-plain-extras": (np.float32, (N, 1), None, True),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("with_timeouts", [True, False], ids=["timeouts", "no-timeouts"])
@pytest.mark.parametrize("with_next", [True, False], ids=["next", "no-next"])
def test_d4rl_variants(tmp_path, encoding, with_timeouts, with_next):
    dtype, reward_shape, compression, extras = ENCODINGS[encoding]
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(N, 5)).astype(dtype)
    nxt = rng.normal(size=(N, 5)).astype(dtype)
    actions = rng.uniform(-1, 1, (N, 2)).astype(dtype)
    rewards = rng.normal(size=N).astype(dtype)
    terminals = np.zeros(N, bool)
    terminals[TERMINAL] = True
    timeouts = np.zeros(N, bool)
    timeouts[TIMEOUT] = True
    entries = {"observations": obs, "actions": actions, "rewards": rewards.reshape(reward_shape),
               "terminals": terminals}
    if with_next:
        entries["next_observations"] = nxt
    if with_timeouts:
        entries["timeouts"] = timeouts
    if extras:
        entries["infos"] = {"qpos": rng.normal(size=(N, 3)), "goal": np.zeros((N, 2))}
        entries["metadata"] = {"algorithm": "SAC", "iteration": 7}
    path = _write(tmp_path / "d4rl.h5", entries, compression)
    if compression:
        with h5py.File(path, "r") as f:
            assert f["observations"].compression == "gzip"

    data = read_dataset(path)
    assert data.layout == "d4rl" and data.env_id is None and not data.actions_normalized
    assert (data.obs_dim, data.act_dim) == (5, 2)
    for name, dt in [("observations", np.float32), ("next_observations", np.float32),
                     ("actions", np.float32), ("rewards", np.float32), ("terminals", bool),
                     ("timeouts", bool)]:
        assert data.arrays[name].dtype == dt, name
    if extras:
        assert data.metadata["algorithm"] == "SAC" and data.metadata["iteration"] == 7
    if with_next:
        rows = np.arange(N)
        expected_next = nxt[rows]
        assert not data.reconstructed_next and data.dropped == 0
    else:
        # inside an episode next[i] = obs[i + 1]; the terminal row keeps its own observation;
        # the timeout row (when marked) and the last row, which ends nothing, are dropped
        rows = np.array([i for i in range(N) if i != N - 1
                         and not (with_timeouts and i == TIMEOUT)])
        expected_next = np.stack([obs[i] if i == TERMINAL else obs[i + 1] for i in rows])
        assert data.reconstructed_next and data.dropped == N - len(rows)
    assert len(data) == len(rows)
    np.testing.assert_array_equal(data.arrays["observations"], obs[rows].astype(np.float32))
    np.testing.assert_array_equal(data.arrays["next_observations"],
                                  expected_next.astype(np.float32))
    np.testing.assert_array_equal(data.arrays["actions"], actions[rows].astype(np.float32))
    np.testing.assert_array_equal(data.arrays["rewards"], rewards[rows].astype(np.float32))
    np.testing.assert_array_equal(data.arrays["terminals"], terminals[rows])
    ends_by_time = timeouts.copy()
    if with_timeouts and not with_next:  # the row before a dropped time-limit row ends it
        ends_by_time[TIMEOUT - 1] = True
    np.testing.assert_array_equal(data.arrays["timeouts"],
                                  ends_by_time[rows] if with_timeouts else np.zeros(len(rows)))


def test_d4rl_terminal_last_row_is_kept_and_float_terminals_read(tmp_path):
    obs = np.arange(24, dtype=np.float32).reshape(6, 4)
    terminals = np.array([0, 1, 0, 0, 0, 1], np.float32)  # some writers store floats
    path = _write(tmp_path / "d.h5", {"observations": obs, "actions": np.zeros((6, 1)),
                                      "rewards": np.ones((6, 1)), "terminals": terminals})
    data = read_dataset(path)
    assert data.dropped == 0 and len(data) == 6
    np.testing.assert_array_equal(data.arrays["terminals"], terminals.astype(bool))
    np.testing.assert_array_equal(data.arrays["next_observations"], obs[[1, 1, 3, 4, 5, 5]])


def test_dataset_info_counts_episodes_ended_by_dropped_timeouts(tmp_path, capsys):
    terminals = np.zeros(10, bool)
    terminals[9] = True
    timeouts = np.zeros(10, bool)
    timeouts[4] = True  # episode 1: rows 0-4, ends by time limit; episode 2: rows 5-9
    path = _write(tmp_path / "two.h5", _d4rl(next_observations=None, terminals=terminals,
                                             timeouts=timeouts))
    info, _ = _ok_json(capsys, "dataset", "info", path)
    assert info["dropped_rows"] == 1
    assert info["episodes"] == 2 and info["truncations"] == 1


# ---------------------------------------------------------------------- 3. Minari layout
MINARI_EPISODES = 12  # episode_10 and episode_11 sort after episode_9 only numerically


def _minari_episode(i: int) -> dict:
    t = 1 + i % 3
    steps = np.arange(t + 1, dtype=np.float32)
    observations = np.stack([np.full(t + 1, i, np.float32), steps, 100 * i + steps,
                             -steps], axis=1)
    return {"observations": observations,
            "actions": ((np.arange(t) % 5 - 2) * 1.2 + 0.01 * i).reshape(t, 1),
            "rewards": 1000.0 * i + np.arange(t),
            "terminations": (np.arange(t) == t - 1) & (i % 2 == 0),
            "truncations": (np.arange(t) == t - 1) & (i % 2 == 1)}


def _minari(folder: Path, metadata: str = "json", env_id: str = IP,
            episodes: dict | None = None) -> Path:
    """A Minari dataset folder; metadata in data/metadata.json ("json"), in root attributes of
    main_data.hdf5 ("attrs") or nowhere ("none"). Returns the folder."""
    data = folder / "data"
    data.mkdir(parents=True)
    episodes = episodes or {f"episode_{i}": _minari_episode(i) for i in
                            reversed(range(MINARI_EPISODES))}
    _write(data / "main_data.hdf5", episodes)
    spec = json.dumps({"id": env_id, "entry_point": "x:y", "max_episode_steps": 1000})
    if metadata == "json":
        (data / "metadata.json").write_text(json.dumps({
            "dataset_id": "mujoco/pendulum/test-v0", "total_episodes": MINARI_EPISODES,
            "env_spec": spec, "minari_version": "0.5.1"}))
    elif metadata == "attrs":
        with h5py.File(data / "main_data.hdf5", "a") as f:
            f.attrs["env_spec"] = spec
            f.attrs["total_episodes"] = MINARI_EPISODES
    return folder


@pytest.fixture(scope="module")
def minari_folder(root) -> Path:
    return _minari(root / "minari")


def _check_minari(data, main_file: Path) -> None:
    assert data.layout == "minari" and data.path == main_file
    assert (data.obs_dim, data.act_dim) == (4, 1)
    episodes = [_minari_episode(i) for i in range(MINARI_EPISODES)]
    for name, key, pick in [("observations", "observations", slice(None, -1)),
                            ("next_observations", "observations", slice(1, None)),
                            ("actions", "actions", slice(None)),
                            ("rewards", "rewards", slice(None)),
                            ("terminals", "terminations", slice(None)),
                            ("timeouts", "truncations", slice(None))]:
        expected = np.concatenate([ep[key][pick] for ep in episodes])
        np.testing.assert_array_equal(data.arrays[name],
                                      expected.astype(data.arrays[name].dtype), err_msg=name)
    assert len(data) == sum(len(ep["actions"]) for ep in episodes)
    assert not data.reconstructed_next and data.dropped == 0


def test_minari_folder_and_main_file(minari_folder):
    main_file = minari_folder / "data" / "main_data.hdf5"
    for given in (minari_folder, main_file):
        data = read_dataset(given)
        _check_minari(data, main_file)
        assert data.env_id == IP


def test_minari_metadata_in_root_attributes(root):
    folder = _minari(root / "minari_old", metadata="attrs", env_id="Hopper-v5")
    main_file = folder / "data" / "main_data.hdf5"
    for given in (folder, main_file):
        data = read_dataset(given)
        _check_minari(data, main_file)
        assert data.env_id == "Hopper-v5"
    data = read_dataset(_minari(root / "minari_bare", metadata="none"))
    assert data.env_id is None


def test_minari_dataset_info_and_actions_in_env_units(minari_folder, capsys):
    info, _ = _ok_json(capsys, "dataset", "info", minari_folder)
    assert info["layout"] == "minari" and info["env_id"] == IP
    assert info["episodes"] == MINARI_EPISODES and info["validation"] == f"ok against {IP}"
    assert info["terminations"] == MINARI_EPISODES // 2
    assert info["truncations"] == MINARI_EPISODES // 2
    data = read_for(minari_folder, IP, 4, 1, "the test")
    raw = np.concatenate([_minari_episode(i)["actions"] for i in range(MINARI_EPISODES)])
    assert np.abs(raw).max() > 1
    np.testing.assert_allclose(data.arrays["actions"], raw / 3, rtol=1e-6, atol=1e-7)


def test_minari_dict_observations_are_an_error(root, capsys):
    episode = _minari_episode(0)
    episode["observations"] = {"observation": episode["observations"],
                               "desired_goal": np.zeros((2, 3))}
    folder = _minari(root / "minari_dict", episodes={"episode_0": episode})
    line = error_line(capsys, "dataset", "info", folder)
    assert "episode_0/observations is a group" in line and "dict observations" in line
    assert str(folder / "data" / "main_data.hdf5") in line


# ------------------------------------------------------------------ 4. validation errors
def _hdf5_bad(path: Path, kind: str) -> Path:
    """A file that ``kind`` makes invalid."""
    if kind == "missing_keys":
        return _write(path, _d4rl(rewards=None, terminals=None))
    if kind == "lengths":
        return _write(path, _d4rl(rewards=np.zeros(9, np.float32)))
    if kind == "lengths_timeouts":
        return _write(path, _d4rl(timeouts=np.zeros(11, bool)))
    if kind == "lengths_next":
        return _write(path, _d4rl(next_observations=np.zeros((9, 4), np.float32)))
    if kind == "nan_obs":
        obs = _d4rl()["observations"]
        obs[6, 2] = np.nan
        return _write(path, _d4rl(observations=obs))
    if kind == "inf_rewards":
        rewards = np.zeros((10, 1))
        rewards[4] = -np.inf
        return _write(path, _d4rl(rewards=rewards))
    if kind == "nan_next":
        nxt = _d4rl()["next_observations"]
        nxt[8, 0] = np.nan
        return _write(path, _d4rl(next_observations=nxt), compression="gzip")
    if kind == "action_space":
        actions = np.zeros((10, 1), np.float32)
        actions[2] = 3.5
        return _write(path, _d4rl(actions=actions, metadata={"env_id": IP}))
    if kind == "unit_actions":
        actions = np.zeros((10, 1), np.float32)
        actions[5] = 1.5
        return _write(path, _d4rl(actions=actions))
    if kind == "env_sizes":
        return _write(path, _d4rl(metadata={"env_id": "Hopper-v5"}))
    if kind == "corrupt":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + np.random.default_rng(0).bytes(2048))
        return path
    if kind == "truncated":
        _write(path, _d4rl(n=2000))
        path.write_bytes(path.read_bytes()[:3000])
        return path
    if kind == "missing":
        return path
    if kind == "empty_folder":
        path.mkdir()
        (path / "data").mkdir()
        (path / "data" / "metadata.json").write_text("{}")
        return path
    if kind == "minari_t_plus_1":
        episode = _minari_episode(2)
        episode["observations"] = episode["observations"][:-1]
        return _minari(path, episodes={"episode_0": _minari_episode(0), "episode_1": episode})
    raise AssertionError(kind)


ERRORS = {  # kind: fragments of the error line (besides the path)
    "missing_keys": ["missing required key(s) rewards, terminals"],
    "lengths": ["'rewards' has 9 rows, 'observations' has 10"],
    "lengths_timeouts": ["'timeouts' has 11 rows, 'observations' has 10"],
    "lengths_next": ["'next_observations' has 9 rows, 'observations' has 10"],
    "nan_obs": ["'observations' holds NaN or inf (row 6)"],
    "inf_rewards": ["'rewards' holds NaN or inf (row 4)"],
    "nan_next": ["'next_observations' holds NaN or inf (row 8)"],
    "action_space": ["actions outside the action space [-3, 3]", "row 2: 3.5"],
    "unit_actions": ["actions outside [-1, 1]", "row 5: 1.5", "--env"],
    "env_sizes": ["sizes 4/1 do not match Hopper-v5's 11/3"],
    "corrupt": ["not a readable HDF5 file"],
    "truncated": ["not a readable HDF5 file"],
    "missing": ["dataset not found"],
    "empty_folder": ["a folder, but no Minari data/main_data.hdf5 in it"],
    "minari_t_plus_1": ["episode_1 has 3 observations for 3 actions", "T + 1"],
}


@pytest.mark.parametrize("kind", list(ERRORS))
def test_dataset_info_errors(tmp_path, capsys, kind):
    path = _hdf5_bad(tmp_path / ("bad" if kind in ("empty_folder", "minari_t_plus_1")
                                 else "bad.h5"), kind)
    line = error_line(capsys, "dataset", "info", path)
    assert str(path) in line
    for fragment in ERRORS[kind]:
        assert fragment in line, line
    if kind == "action_space":  # the env is known: no hint to pass one
        assert "--env" not in line


def test_read_dataset_raises_one_error_type(tmp_path):
    with pytest.raises(MbiapoError, match="missing required key"):
        read_dataset(_hdf5_bad(tmp_path / "bad.h5", "missing_keys"))


def test_d4rl_field_that_is_a_group_is_an_error_line(tmp_path, capsys):
    path = _write(tmp_path / "grp.h5", _d4rl(actions={"joint": np.zeros(10)}))
    line = error_line(capsys, "dataset", "info", path)
    assert str(path) in line and "actions" in line


def test_reading_never_modifies_the_file(tmp_path, collected, minari_folder, capsys):
    bad = _hdf5_bad(tmp_path / "nan.h5", "nan_obs")
    out_of_space = _hdf5_bad(tmp_path / "space.h5", "action_space")
    good = collected
    main_file = minari_folder / "data" / "main_data.hdf5"
    files = [bad, out_of_space, good, main_file, minari_folder / "data" / "metadata.json"]
    before = [_snapshot(p) for p in files]
    assert run_cli(capsys, "dataset", "info", bad)[0] == 2
    assert run_cli(capsys, "dataset", "info", out_of_space)[0] == 2
    assert run_cli(capsys, "dataset", "info", good)[0] == 0
    assert run_cli(capsys, "dataset", "info", minari_folder)[0] == 0
    data = read_for(good, IP, 4, 1, "the test")  # normalizes actions in memory only
    assert np.abs(data.arrays["actions"]).max() <= 1
    assert [_snapshot(p) for p in files] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.h5", "space.h5"]


def test_offline_train_env_differs_from_the_files(random_ip, tmp_path, capsys):
    line = error_line(capsys, "train", "--offline", random_ip, "--env", "Hopper-v5",
                       "--out", tmp_path / "run")
    assert str(random_ip) in line and f"recorded on {IP}, but --env is Hopper-v5" in line
    assert not (tmp_path / "run").exists()


def test_offline_train_sizes_do_not_match_the_env(tmp_path, capsys):
    path = _write(tmp_path / "d.h5", _d4rl(obs_dim=6, act_dim=2))
    line = error_line(capsys, "train", "--offline", path, "--env", IP, "--out",
                       tmp_path / "run")
    assert str(path) in line and f"sizes 6/2 do not match {IP}'s 4/1" in line
    assert not (tmp_path / "run").exists()


def test_offline_train_actions_outside_the_given_envs_space(tmp_path, capsys):
    actions = np.zeros((10, 1), np.float32)
    actions[3] = 3.5
    path = _write(tmp_path / "d.h5", _d4rl(actions=actions))
    line = error_line(capsys, "train", "--offline", path, "--env", IP, "--out",
                       tmp_path / "run")
    assert "actions outside the action space [-3, 3] (row 3: 3.5)" in line
    assert "pass --env" not in line


def test_offline_train_needs_out(random_ip, capsys):
    assert "--out" in error_line(capsys, "train", "--offline", random_ip)


def test_plan_model_based_data_must_fit_the_checkpoint(ckpt, tmp_path, capsys):
    wide = _write(tmp_path / "wide.h5", _d4rl(obs_dim=5))
    line = error_line(capsys, "plan", "--checkpoint", ckpt, "--model-based", "--data", wide,
                       "--episodes", "1")
    assert str(wide) in line and "sizes 5/1 do not match the checkpoint's 4/1" in line
    hopper = _write(tmp_path / "hopper.h5", _d4rl(metadata={"env_id": "Hopper-v5"}))
    line = error_line(capsys, "plan", "--checkpoint", ckpt, "--model-based", "--data",
                       hopper, "--episodes", "1")
    assert str(hopper) in line and f"recorded on Hopper-v5, but the checkpoint is for {IP}" \
        in line
    assert not list(ckpt.parent.glob("*.mb-*"))  # nothing was fitted or cached


# ------------------------------------------------------------ replay files are datasets too
def test_replay_file_reads_in_order_with_normalized_actions(tmp_path):
    buf = ReplayBuffer(4, 1, capacity=5)
    for i in range(7):  # wraps: the ring holds transitions 2..6
        buf.add(np.full(4, i), [0.1 * i], i, np.full(4, i + 0.5), i == 6, False)
    path = tmp_path / "replay.h5"
    buf.save(path, {"env_id": IP, "source": "mbiapo train"})
    data = read_dataset(path)
    assert data.layout == "mbiapo" and data.env_id == IP and data.actions_normalized
    np.testing.assert_array_equal(data.arrays["rewards"], np.arange(2, 7, dtype=np.float32))
    np.testing.assert_array_equal(data.arrays["observations"][:, 0], np.arange(2, 7))
    np.testing.assert_array_equal(data.arrays["next_observations"][:, 0],
                                  np.arange(2, 7) + 0.5)
    np.testing.assert_array_equal(data.arrays["terminals"], [0, 0, 0, 0, 1])
    data = read_for(path, IP, 4, 1, "the test")  # already [-1, 1]: not rescaled by 3
    np.testing.assert_allclose(data.arrays["actions"][:, 0], 0.1 * np.arange(2, 7), rtol=1e-6)
    sampled = ReplayBuffer.from_dataset(data)
    assert len(sampled) == 5 and sampled.data["actions"] is data.arrays["actions"]


def test_replay_file_actions_outside_unit_range(tmp_path, capsys):
    buf = ReplayBuffer(4, 1, capacity=3)
    for i in range(3):
        buf.add(np.zeros(4), [1.5 if i == 1 else 0.0], 0.0, np.zeros(4), False, False)
    path = tmp_path / "replay.h5"
    buf.save(path, {"env_id": IP})
    line = error_line(capsys, "dataset", "info", path)
    assert "actions outside [-1, 1] (row 1: 1.5)" in line and "--env" not in line


def test_buffer_from_unnormalized_dataset_is_refused(random_ip):
    with pytest.raises(ValueError, match="normalize"):
        ReplayBuffer.from_dataset(read_dataset(random_ip))


# ------------------------------------------------------------------- 5. offline training
def test_offline_train_writes_a_run_with_evaluations(offline_run):
    assert {"checkpoint.pt", "config.yaml", "metrics.csv"} <= {p.name for p in
                                                               offline_run.iterdir()}
    rows = _metrics(offline_run)
    assert [int(r["step"]) for r in rows] == [15, 30]
    assert [int(r["updates"]) for r in rows] == [15, 30]
    for row in rows:
        assert row["eval_return_mean"] != "" and float(row["eval_return_mean"]) > 0
        assert np.isfinite(float(row["q_loss"]))
    payload = read_checkpoint(offline_run)
    assert payload["updates"] == 30 and payload["env_id"] == IP
    assert payload["config"]["train"]["steps"] == 30
    assert payload["config"]["env"]["max_episode_steps"] == 20
    assert not (offline_run / "replay.h5").exists()


def test_offline_run_refuses_an_existing_run(offline_run, random_ip, capsys):
    before = _snapshot(offline_run / "checkpoint.pt")
    line = error_line(capsys, "train", "--offline", random_ip, "--steps", "30", "--out",
                       offline_run)
    assert "already holds a run" in line and "--resume" in line
    assert _snapshot(offline_run / "checkpoint.pt") == before


def test_offline_resume_continues_to_45_updates(offline_run, capsys):
    result, _ = _ok_json(capsys, "train", "--resume", offline_run, "--steps", "45")
    assert result["updates"] == 45 and result["step"] == 45
    rows = _metrics(offline_run)
    assert [int(r["step"]) for r in rows] == [15, 30, 45]
    assert rows[-1]["eval_return_mean"] != ""
    payload = read_checkpoint(offline_run)
    assert payload["updates"] == 45 and payload["config"]["train"]["steps"] == 45


def test_offline_train_without_env_skips_evaluation(no_env, root, capsys):
    out = root / "no_env_run"
    result, err = _ok_json(capsys, "train", "--offline", no_env, "--planner", "direct",
                           "--steps", "30", "--out", out, *TRAIN)
    assert "without evaluation" in err and str(no_env) in err
    assert result["updates"] == 30 and "eval_return_mean" not in result
    rows = _metrics(out)
    assert [int(r["step"]) for r in rows] == [15, 30]
    assert all(r["eval_return_mean"] == "" and r["eval_return_std"] == "" for r in rows)
    assert all(np.isfinite(float(r["q_loss"])) for r in rows)
    # and it resumes without an env too
    result, _ = _ok_json(capsys, "train", "--resume", out, "--steps", "45")
    assert result["updates"] == 45
    assert [r["eval_return_mean"] for r in _metrics(out)] == ["", "", ""]


def test_offline_train_model_based(random_ip, root, capsys):
    out = root / "mb_run"
    result, _ = _ok_json(capsys, "train", "--offline", random_ip, "--planner", "direct",
                         "--value", "model-based", "--steps", "30", "--out", out, *TRAIN,
                         "value.model_pretrain=5")
    assert result["updates"] == 30
    rows = _metrics(out)
    assert [int(r["step"]) for r in rows] == [15, 30]
    assert all(r["eval_return_mean"] != "" for r in rows)
    assert all(np.isfinite(float(r["model_loss"])) for r in rows)
    payload = read_checkpoint(out)
    assert payload["config"]["value"]["kind"] == "model-based"


def test_offline_train_from_a_minari_folder(minari_folder, root, capsys):
    out = root / "minari_run"
    result, _ = _ok_json(capsys, "train", "--offline", minari_folder, "--planner", "direct",
                         "--steps", "15", "--out", out, *TRAIN, "train.batch_size=8")
    assert result["updates"] == 15 and result["eval_return_mean"] > 0
