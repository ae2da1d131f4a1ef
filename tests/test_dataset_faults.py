"""Damaged dataset files: every read of a corrupted copy of a valid D4RL file or Minari
folder is either exact or one MbiapoError line naming the file (never a traceback, never a
write to the file); values that are not what the layout says (an integer env id, NaN flags,
NaN/inf values) are refused with a line naming the field; ``plan --model-based --data`` reads
through the same reader. And an offline run started with a relative dataset path resumes
from another directory."""

import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mbiapo.agent import Agent
from mbiapo.checkpoint import read_checkpoint, save_checkpoint
from mbiapo.datasets import read_dataset
from mbiapo.errors import MbiapoError
from tests.helpers import error_line, run_cli, tiny_config
from tests.test_datasets import _d4rl, _minari, _minari_episode, _write

IP = "InvertedPendulum-v5"
ARRAY_NAMES = ("observations", "actions", "rewards", "next_observations", "terminals",
               "timeouts", "terminations", "truncations")
D4RL_CASES, MINARI_CASES = 300, 100


def _corruptible(path: Path) -> np.ndarray:
    """(file size,) bool: the bytes a corruption may overwrite: all but the raw bytes of the
    arrays (HDF5 keeps no checksum of them, so new bytes there are a different valid file,
    not a detectable fault) and the global heap of variable-length strings (libhdf5 2.0
    loops forever on some damaged heap-object sizes: the read never returns, so no
    reader can make it an error). A heap collection's size is the 8 bytes after its
    signature, version and reserved bytes (8-byte lengths, h5py's default)."""
    raw = path.read_bytes()
    allowed = np.ones(len(raw), bool)

    def spare_array(name: str, item) -> None:
        if isinstance(item, h5py.Dataset) and name.rpartition("/")[2] in ARRAY_NAMES:
            start = item.id.get_offset()
            allowed[start:start + item.id.get_storage_size()] = False

    with h5py.File(path, "r") as f:
        f.visititems(spare_array)
    start = raw.find(b"GCOL")
    while start >= 0:
        allowed[start:start + int.from_bytes(raw[start + 8:start + 16], "little")] = False
        start = raw.find(b"GCOL", start + 1)
    return allowed


def _corrupt(original: bytes, allowed: np.ndarray, rng: np.random.Generator) -> bytes:
    """``original`` with 1-3 random byte ranges (1-32 bytes from a random allowed offset)
    overwritten by random bytes, only where ``allowed``."""
    data = np.frombuffer(original, np.uint8).copy()
    offsets = np.flatnonzero(allowed)
    for _ in range(rng.integers(1, 4)):
        start = int(rng.choice(offsets))
        span = slice(start, start + int(rng.integers(1, 33)))
        noise = rng.integers(0, 256, len(data[span]), dtype=np.uint8)
        data[span] = np.where(allowed[span], noise, data[span])
    return data.tobytes()


def _content(path: Path) -> dict:
    """What plain h5py sees in a file: {name: (dtype, shape, bytes of numeric values)} for
    every dataset, or {"unreadable": error type}."""
    found = {}

    def add(name: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            numeric = item.dtype.kind in "biuf"
            found[name] = (str(item.dtype), item.shape,
                           item[()].tobytes() if numeric else None)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(add)
    except Exception as e:  # a damaged file raises many types
        return {"unreadable": type(e).__name__}
    return found


def _fuzz(original: Path, main_file: Path, cases: int, seed: int, tmp: Path) -> dict:
    """Read ``cases`` corrupted copies of a dataset (``original``: a file or a folder whose
    HDF5 file is ``main_file``). Each read must be exact, one MbiapoError line naming the
    copy, or (when plain h5py sees a different file: a renamed link, moved data) a read
    whose arrays differ; with no warning, and the copy left as written. Returns the counts."""
    expected = read_dataset(original).arrays
    inner = main_file.relative_to(original) if original.is_dir() else None
    pristine = main_file.read_bytes()
    allowed, rng = _corruptible(main_file), np.random.default_rng(seed)
    counts = {"exact": 0, "error": 0, "different file": 0}
    for case in range(cases):
        copy = tmp / f"case{case}{'' if inner else main_file.suffix}"
        target = copy / inner if inner else copy
        if inner:
            shutil.copytree(original, copy)
        damaged = _corrupt(pristine, allowed, rng)
        target.write_bytes(damaged)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                data = read_dataset(copy)
            except MbiapoError as e:
                message = str(e)
                assert "\n" not in message and message.startswith(str(copy)), message
                counts["error"] += 1
            else:
                if all(np.array_equal(data.arrays[k], v) for k, v in expected.items()):
                    counts["exact"] += 1
                else:
                    assert _content(target) != _content(main_file), f"case {case}"
                    counts["different file"] += 1
        assert not caught, f"case {case}: {[str(w.message) for w in caught]}"
        assert target.read_bytes() == damaged, f"case {case}: the file was written to"
    return counts


@pytest.fixture(scope="module")
def d4rl_file(tmp_path_factory) -> Path:
    """A small valid D4RL file with an env id (a variable-length string) in metadata/."""
    return _write(tmp_path_factory.mktemp("faults") / "d4rl.h5",
                  _d4rl(n=8, metadata={"env_id": IP, "source": "test"}))


@pytest.fixture(scope="module")
def minari_folder(tmp_path_factory) -> Path:
    return _minari(tmp_path_factory.mktemp("faults") / "minari",
                   episodes={f"episode_{i}": _minari_episode(i) for i in range(4)})


def test_corrupted_d4rl_files_read_exactly_or_give_one_error(d4rl_file, tmp_path):
    counts = _fuzz(d4rl_file, d4rl_file, D4RL_CASES, seed=0, tmp=tmp_path)
    assert counts["exact"] and counts["error"], counts  # both outcomes are exercised


def test_corrupted_minari_folders_read_exactly_or_give_one_error(minari_folder, tmp_path):
    main_file = minari_folder / "data" / "main_data.hdf5"
    counts = _fuzz(minari_folder, main_file, MINARI_CASES, seed=1, tmp=tmp_path)
    assert counts["exact"] and counts["error"], counts


def _damaged_header(path: Path, name: str) -> Path:
    """``path`` with the object header of its dataset ``name`` overwritten (h5py then
    raises KeyError on opening it)."""
    with h5py.File(path, "r") as f:
        header = h5py.h5o.get_info(f[name].id).addr
    data = bytearray(path.read_bytes())
    data[header:header + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    return path


def test_damaged_object_header_is_one_error_line(tmp_path, capsys):
    path = _damaged_header(_write(tmp_path / "d.h5", _d4rl()), "actions")
    line = error_line(capsys, "dataset", "info", path)
    assert line.startswith(f"mbiapo: error: {path}: not a readable HDF5 file ("), line


def test_plan_model_based_data_reads_through_the_same_reader(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / "ip.pt"
    save_checkpoint(ckpt, Agent(tiny_config(), 4, 1), {"step": 0})
    data = _damaged_header(_write(tmp_path / "d.h5", _d4rl(metadata={"env_id": IP})),
                           "rewards")
    line = error_line(capsys, "plan", "--checkpoint", ckpt, "--model-based", "--data", data,
                      "--episodes", "1", "--fit-steps", "1")
    assert f"{data}: not a readable HDF5 file" in line
    assert not list(tmp_path.glob("*.mb-*"))  # nothing was fitted or cached


def test_integer_env_id_is_one_error_line(tmp_path, capsys):
    path = _write(tmp_path / "d.h5", _d4rl(metadata={"env_id": 7}))
    with pytest.raises(MbiapoError, match="metadata/env_id is 7"):
        read_dataset(path)
    line = error_line(capsys, "dataset", "info", path)
    assert f"{path}: metadata/env_id is 7 (int)" in line and "a string" in line


def test_integer_minari_env_spec_id_is_one_error_line(tmp_path, capsys):
    folder = _minari(tmp_path / "m", episodes={"episode_0": _minari_episode(1)})
    meta_file = folder / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["env_spec"] = json.dumps({"id": 7})
    meta_file.write_text(json.dumps(meta))
    line = error_line(capsys, "dataset", "info", folder)
    assert f"{meta_file}: env_spec id is 7 (int)" in line


@pytest.mark.parametrize("field,value,row", [
    ("terminals", np.nan, 3), ("timeouts", np.nan, 5), ("terminals", 0.5, 2),
    ("actions", np.nan, 4), ("observations", np.inf, 1), ("rewards", -np.inf, 6)])
def test_flags_not_0_or_1_and_non_finite_values_are_refused(tmp_path, capsys, field, value,
                                                           row):
    array = _d4rl()[field].astype(np.float32)
    array[row] = value
    path = _write(tmp_path / "d.h5", _d4rl(**{field: array}))
    line = error_line(capsys, "dataset", "info", path)
    assert str(path) in line and f"'{field}' holds" in line and f"(row {row})" in line


def test_nan_minari_terminations_are_refused(tmp_path, capsys):
    episode = _minari_episode(2)
    episode["terminations"] = episode["terminations"].astype(np.float64)
    episode["terminations"][1] = np.nan
    folder = _minari(tmp_path / "m", episodes={"episode_0": episode})
    line = error_line(capsys, "dataset", "info", folder)
    assert "'episode_0/terminations' holds nan (row 1)" in line


def test_offline_run_with_a_relative_dataset_resumes_from_elsewhere(tmp_path, monkeypatch,
                                                                    capsys):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    _write(start / "data.h5", _d4rl(n=80, seed=3))  # no env: trains without evaluating
    monkeypatch.chdir(start)
    code, _, err = run_cli(capsys, "train", "--offline", "data.h5", "--planner", "direct",
                           "--steps", "15", "--out", "run", "planner.hidden=32",
                           "value.hidden=32", "train.batch_size=32", "train.eval_every=15")
    assert code == 0, err
    assert read_checkpoint(start / "run")["offline_dataset"] == str(start / "data.h5")
    monkeypatch.chdir(elsewhere)
    code, out, err = run_cli(capsys, "train", "--resume", start / "run", "--steps", "30",
                             "--json")
    assert code == 0, err
    assert json.loads(out)["updates"] == 30
