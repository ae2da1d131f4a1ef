"""The analysis subcommands end to end, in-process on tiny untrained checkpoints: the files
each one writes, output protection, and one error line with exit code 2 on bad input."""

import csv
import itertools
import json
import math
import shutil
from collections import defaultdict

import h5py
import numpy as np
import pytest
import torch

from mbiapo.agent import Agent
from mbiapo.analyses.states import save_states
from mbiapo.checkpoint import save_checkpoint
from mbiapo.cli import main
from mbiapo.envs import make_env
from tests.helpers import error_line, run_cli, tiny_config

HC_STATES = 6
IP_STATES = 5
COMPARE = ["--iters", "3", "--eval-samples", "4"]


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _hc_observations(n: int) -> np.ndarray:
    """Real HalfCheetah states: a few random steps after reset(seed=i)."""
    env = make_env("HalfCheetah-v5", 50)
    env.action_space.seed(0)
    states = []
    for i in range(n):
        obs, _ = env.reset(seed=i)
        for _ in range(i):
            obs, *_ = env.step(env.action_space.sample())
        states.append(obs)
    env.close()
    return np.stack(states).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("analysis_cli")
    paths = {}
    for name, planner, env, dims in [("ip", "iterative", "InvertedPendulum-v5", (4, 1)),
                                     ("ip_direct", "direct", "InvertedPendulum-v5", (4, 1)),
                                     ("hc", "iterative", "HalfCheetah-v5", (17, 6)),
                                     ("hc_direct", "direct", "HalfCheetah-v5", (17, 6))]:
        agent = Agent(tiny_config(planner, env), *dims)
        if planner == "iterative":  # its zero-initialised head would never move mu
            with torch.no_grad():
                agent.planner.net.head.weight.normal_(0, 0.3)
        paths[name] = root / f"{name}.pt"
        save_checkpoint(paths[name], agent, {"step": 0})
        if name == "hc":
            paths["hc_states"] = root / "hc_states.h5"
            save_states(paths["hc_states"], _hc_observations(HC_STATES), agent, {"seed": 0})
    paths["ip_states"] = root / "ip_states.h5"
    assert main(["states", "--checkpoint", str(paths["ip"]), "--n", str(IP_STATES),
                 "--episodes", "2", "--out", str(paths["ip_states"])]) == 0
    with h5py.File(paths["ip_states"], "r") as f:
        attrs, observations = dict(f.attrs), f["observations"][()]
    for name, data, extra in [("nan", np.where(np.eye(*observations.shape), np.nan,
                                               observations), {}),
                              ("wide", np.zeros((3, 5), np.float32), {}),
                              ("newer", observations, {"format_version": 99})]:
        paths[name] = root / f"{name}.h5"
        with h5py.File(paths[name], "w") as f:
            f.create_dataset("observations", data=data.astype(np.float32))
            f.attrs.update({**attrs, **extra})
    paths["junk"] = root / "junk.h5"
    paths["junk"].write_bytes(np.random.default_rng(0).bytes(4096))
    paths["foreign"] = root / "foreign.h5"
    with h5py.File(paths["foreign"], "w") as f:
        f["observations"] = observations
    paths["missing"] = root / "missing.h5"
    return paths


@pytest.fixture(scope="module")
def compare_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    argv = ["compare", "--checkpoint", files["hc"], "--states", files["hc_states"], *COMPARE,
            "--planners", f"iterative,adam,cem,direct={files['hc_direct']}", "--out", out,
            "--json"]
    assert main([str(a) for a in argv]) == 0
    return out, argv


@pytest.fixture(scope="module")
def compare_json(compare_run):
    out, argv = compare_run
    return json.loads((out / "summary.json").read_text())


def _analysis(files, tmp_path_factory, *argv) -> object:
    out = tmp_path_factory.mktemp(argv[0]) / "out"
    argv = [argv[0], *[files.get(a, a) if isinstance(a, str) else a for a in argv[1:]]]
    assert main([str(a) for a in [*argv, "--out", out]]) == 0
    return out


@pytest.fixture(scope="module")
def gap_dir(files, tmp_path_factory):
    return _analysis(files, tmp_path_factory, "gap", "--checkpoint", "ip", "--states",
                     "ip_states", "--steps", "3", "--samples", "4", "--eval-samples", "8",
                     "--extra-iters", "2")


@pytest.fixture(scope="module")
def modes_dir(files, tmp_path_factory):
    return _analysis(files, tmp_path_factory, "modes", "--checkpoint", "hc", "--states",
                     "hc_states", "--runs", "3", "--grid", "3", "--samples", "2",
                     "--eval-samples", "2")


@pytest.fixture(scope="module")
def modes_ip_dir(files, tmp_path_factory):
    return _analysis(files, tmp_path_factory, "modes", "--checkpoint", "ip", "--states",
                     "ip_states", "--runs", "3", "--grid", "3", "--samples", "2",
                     "--eval-samples", "2")


@pytest.fixture(scope="module")
def surface_dir(files, tmp_path_factory):
    return _analysis(files, tmp_path_factory, "surface", "--checkpoint", "hc", "--dims", "1,3",
                     "--grid", "3", "--iters", "2")


@pytest.fixture(scope="module")
def bias_dir(files, tmp_path_factory):
    return _analysis(files, tmp_path_factory, "bias", "--checkpoint", "ip", "--pairs", "2",
                     "--rollouts", "2", "--horizon", "3")


# states


def test_states_writes_observations_with_the_env_in_its_attributes(files):
    with h5py.File(files["ip_states"], "r") as f:
        assert f["observations"].shape == (IP_STATES, 4)
        assert f["observations"].dtype == np.float32
        assert np.isfinite(f["observations"][()]).all()
        assert f.attrs["env_id"] == "InvertedPendulum-v5"
        assert (f.attrs["obs_dim"], f.attrs["act_dim"]) == (4, 1)


def test_states_json_reports_what_it_wrote(files, tmp_path, capsys):
    out = tmp_path / "s.h5"
    code, stdout, _ = run_cli(capsys, "states", "--checkpoint", files["ip"], "--n", 3,
                           "--episodes", 1, "--out", out, "--json")
    assert code == 0
    assert json.loads(stdout) == {"out": str(out), "env": "InvertedPendulum-v5", "states": 3,
                                  "obs_dim": 4, "threads": torch.get_num_threads()}
    with h5py.File(out, "r") as f:
        assert f["observations"].shape == (3, 4)


def test_states_same_seed_gives_identical_states_and_another_seed_others(files, tmp_path):
    def collect(seed):
        out = tmp_path / f"seed{seed}.h5"
        assert main(["states", "--checkpoint", str(files["ip"]), "--n", str(IP_STATES),
                     "--episodes", "2", "--seed", str(seed), "--out", str(out)]) == 0
        with h5py.File(out, "r") as f:
            return f["observations"][()]

    with h5py.File(files["ip_states"], "r") as f:
        first = f["observations"][()]
    np.testing.assert_array_equal(collect(0), first)
    assert not np.array_equal(collect(1), first)


def test_states_refuses_to_overwrite_an_existing_file_without_force(files, tmp_path, capsys):
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious results")
    argv = ["states", "--checkpoint", files["ip"], "--n", 2, "--episodes", 1, "--out", out]
    assert "exists" in error_line(capsys, *argv)
    assert out.read_bytes() == b"precious results"
    assert run_cli(capsys, *argv, "--force")[0] == 0
    with h5py.File(out, "r") as f:
        assert f["observations"].shape == (2, 4)


# compare


def test_compare_csv_has_a_row_per_planner_iteration_and_state(compare_run):
    out, _ = compare_run
    assert {p.name for p in out.iterdir()} >= {"compare.csv", "summary.json", "compare.png"}
    cells = defaultdict(set)
    for row in _rows(out / "compare.csv"):
        cells[row["planner"]].add((int(row["iteration"]), int(row["state"])))
        assert math.isfinite(float(row["objective"])) and float(row["seconds"]) > 0
    expected = {name: set(itertools.product(range(1, iters + 1), range(HC_STATES)))
                for name, iters in [("iterative", 3), ("adam", 3), ("cem", 3), ("direct", 1)]}
    assert dict(cells) == expected
    assert len(_rows(out / "compare.csv")) == 3 * 3 * HC_STATES + HC_STATES


def test_compare_json_has_every_planner_and_the_iterative_vs_adam_time_ratio(compare_json):
    planners = compare_json["planners"]
    assert list(planners) == ["iterative", "adam", "cem", "direct"]
    assert {name: p["iterations"] for name, p in planners.items()} == {
        "iterative": 3, "adam": 3, "cem": 3, "direct": 1}
    ratio = compare_json["time_per_iteration_iterative_vs_adam"]
    assert ratio == pytest.approx(planners["iterative"]["seconds_per_iteration"]
                                  / planners["adam"]["seconds_per_iteration"])
    assert compare_json["env"] == "HalfCheetah-v5" and compare_json["states"] == HC_STATES
    assert compare_json["iters"] == 3 and compare_json["eval_samples"] == 4


def test_compare_json_stdout_is_the_summary_file_plus_out(files, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "compare", "--checkpoint", files["ip"], "--states",
                           files["ip_states"], "--iters", 2, "--eval-samples", 2,
                           "--planners", "iterative,adam", "--out", tmp_path / "o", "--json")
    assert code == 0
    result = json.loads(stdout)
    saved = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert result.pop("out") == str(tmp_path / "o")
    assert result == saved and "table" not in result
    assert list(result["planners"]) == ["iterative", "adam"]


def test_compare_summary_csv_agree_on_final_objective(compare_run, compare_json):
    out, _ = compare_run
    finals = defaultdict(list)
    for row in _rows(out / "compare.csv"):
        if int(row["iteration"]) == compare_json["planners"][row["planner"]]["iterations"]:
            finals[row["planner"]].append(float(row["objective"]))
    for name, values in finals.items():
        assert np.mean(values) == pytest.approx(
            compare_json["planners"][name]["J_final"]["mean"], rel=1e-4, abs=1e-5)


def test_compare_refuses_a_non_empty_out_without_force_and_overwrites_with_it(
        compare_run, tmp_path, capsys):
    src, argv = compare_run
    out = tmp_path / "cmp"
    shutil.copytree(src, out)
    before = (out / "compare.csv").read_bytes()
    argv = [out if a == src else a for a in argv if a != "--json"]
    assert "not empty" in error_line(capsys, *argv)
    assert (out / "compare.csv").read_bytes() == before
    code, stdout, _ = run_cli(capsys, *argv, "--force")
    assert code == 0
    lines = stdout.splitlines()
    for name in ("iterative", "adam", "cem", "direct"):
        assert any(line.split()[0] == name for line in lines if line.strip()), stdout
    assert f"results in {out}" in stdout
    assert len(_rows(out / "compare.csv")) == 3 * 3 * HC_STATES + HC_STATES


# bad input


CMP_IP = ["compare", "--checkpoint", "{ip}", "--states", "{ip_states}"]
CMP_HC = ["compare", "--checkpoint", "{hc}", "--states", "{hc_states}"]
BAD_INPUT = {
    "states-of-another-env": (["compare", "--checkpoint", "{ip}", "--states", "{hc_states}"],
                              ["HalfCheetah-v5", "InvertedPendulum-v5"]),
    "corrupt-states": ([*CMP_IP[:4], "{junk}"], ["not a readable HDF5 file"]),
    "missing-states": ([*CMP_IP[:4], "{missing}"], ["states file not found"]),
    "foreign-hdf5": ([*CMP_IP[:4], "{foreign}"], ["not an mbiapo states file"]),
    "nan-states": ([*CMP_IP[:4], "{nan}"], ["NaN"]),
    "states-of-another-size": ([*CMP_IP[:4], "{wide}"], ["(3, 5)", "(N >= 1, 4)"]),
    "newer-states-format": ([*CMP_IP[:4], "{newer}"], ["newer", "upgrade"]),
    "unknown-planner": ([*CMP_IP, "--planners", "iterative,foo"], ["unknown planner 'foo'"]),
    "untrained-direct": ([*CMP_IP, "--planners", "direct"], ["no trained 'direct' planner"]),
    "direct-of-another-env": ([*CMP_HC, "--planners", "iterative,direct={ip_direct}"],
                              ["HalfCheetah-v5", "InvertedPendulum-v5"]),
    "direct-from-iterative": ([*CMP_HC, "--planners", "direct={ip}"],
                              ["trained a 'iterative' planner, not 'direct'"]),
    "direct-missing": ([*CMP_IP, "--planners", "direct={missing}"], ["checkpoint not found"]),
    "iters-0": ([*CMP_IP, "--iters", "0"], ["--iters must be >= 1, got 0"]),
    "unknown-override": ([*CMP_IP, "planner.nope=1"], ["planner.nope"]),
    "non-planner-override": ([*CMP_IP, "train.lr=1"], ["only planner.* settings"]),
    "out-is-a-file": ([*CMP_IP, "--out", "{ip_states}"], ["is a file"]),
    "planner-twice": (["gap", *CMP_IP[1:], "--planners", "iterative,iterative"],
                      ["listed twice"]),
    "negative-extra-iters": (["gap", *CMP_IP[1:], "--extra-iters", "-1"], ["--extra-iters"]),
    "one-run": (["modes", *CMP_IP[1:], "--runs", "1"], ["--runs"]),
    "same-dims": (["surface", "--checkpoint", "{hc}", "--dims", "0,0"], ["--dims", "'0,0'"]),
    "dim-out-of-range": (["surface", "--checkpoint", "{hc}", "--dims", "0,6"], ["[0, 6)"]),
    "surface-one-action-dim": (["surface", "--checkpoint", "{ip}"],
                               ["InvertedPendulum-v5 has a single action dim"]),
    "state-out-of-range": (["surface", *CMP_HC[1:], "--state", "999"],
                           ["--state 999 is out of range", f"holds {HC_STATES} states"]),
    "horizon-0": (["bias", "--checkpoint", "{ip}", "--horizon", "0"], ["--horizon must be >= 1"]),
    "n-0": (["states", "--checkpoint", "{ip}", "--n", "0", "--out", "{out}.h5"],
            ["--n must be >= 1"]),
}


@pytest.mark.parametrize("argv, messages", list(BAD_INPUT.values()), ids=list(BAD_INPUT))
def test_bad_input_is_one_error_line(files, tmp_path, capsys, argv, messages):
    argv = [a.format(**files, out=tmp_path / "out") for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    line = error_line(capsys, *argv)
    for message in messages:
        assert message in line


def test_unknown_planner_override_is_an_error_with_only_trained_planners(files, tmp_path,
                                                                         capsys):
    line = error_line(capsys, "compare", "--checkpoint", files["ip"], "--states",
                       files["ip_states"], "--iters", 1, "--eval-samples", 1, "--planners",
                       "iterative", "--out", tmp_path / "o", "planner.nope=1")
    assert "planner.nope" in line


def test_surface_negative_state_without_states_file_is_one_error_line(files, tmp_path,
                                                                      capsys):
    error_line(capsys, "surface", "--checkpoint", files["hc"], "--state", -1, "--grid", 2,
                "--iters", 1, "--out", tmp_path / "o")


def test_states_into_a_missing_folder_is_one_error_line(files, tmp_path, capsys):
    error_line(capsys, "states", "--checkpoint", files["ip"], "--n", 2, "--episodes", 1,
                "--out", tmp_path / "no" / "such" / "s.h5")


# gap, modes, surface, bias


def test_gap_writes_a_row_per_state_for_the_planner_and_its_extra_iterations(gap_dir):
    rows = _rows(gap_dir / "gap.csv")
    by_planner = defaultdict(list)
    for row in rows:
        by_planner[row["planner"]].append(int(row["state"]))
        assert float(row["gap"]) == pytest.approx(
            float(row["J_refined"]) - float(row["J_estimate"]), rel=1e-3, abs=1e-5)
    assert by_planner == {"iterative": list(range(IP_STATES)),
                          "iterative+2": list(range(IP_STATES))}
    summary = json.loads((gap_dir / "summary.json").read_text())
    assert list(summary["planners"]) == ["iterative", "iterative+2"]
    assert summary["adam_steps"] == 3 and (gap_dir / "gap.png").is_file()


SEEDED = {
    "compare": ("compare.csv", ["--checkpoint", "ip", "--states", "ip_states", "--iters", "2",
                                "--samples", "3", "--eval-samples", "4"]),
    "gap": ("gap.csv", ["--checkpoint", "ip", "--states", "ip_states", "--steps", "2",
                        "--samples", "3", "--eval-samples", "4", "--extra-iters", "1"]),
    "modes": ("modes.csv", ["--checkpoint", "ip", "--states", "ip_states", "--runs", "2",
                            "--grid", "2", "--samples", "3", "--eval-samples", "4"]),
    "surface": ("surface_paths.csv", ["--checkpoint", "hc", "--states", "hc_states",
                                      "--grid", "2", "--iters", "2", "--samples", "3",
                                      "--eval-samples", "4"]),
}


@pytest.mark.parametrize("analysis", list(SEEDED))
def test_an_analysis_repeats_exactly_with_its_seed_and_changes_with_another(files, tmp_path,
                                                                          analysis):
    """--seed fixes every random number: the planners' samples as well as the estimator's."""
    name, argv = SEEDED[analysis]

    def results(seed: int, run: str) -> list[dict]:
        out = tmp_path / run
        args = [files.get(a, a) for a in argv]
        assert main([analysis, *map(str, args), "--seed", str(seed), "--out", str(out)]) == 0
        return [{k: v for k, v in row.items() if k != "seconds"} for row in _rows(out / name)]

    first = results(0, "a")
    assert results(0, "b") == first
    assert results(1, "c") != first


def test_modes_on_halfcheetah_writes_pairs_of_runs_and_every_pair_of_action_dims(modes_dir):
    runs = defaultdict(set)
    for row in _rows(modes_dir / "modes.csv"):
        runs[int(row["state"])].add((int(row["run_i"]), int(row["run_j"])))
        assert 0 <= float(row["distance"]) <= 2 * math.sqrt(6)
    assert runs == {b: {(0, 1), (0, 2), (1, 2)} for b in range(HC_STATES)}
    cells = defaultdict(int)
    for row in _rows(modes_dir / "modes_pairs.csv"):
        cells[row["pair"]] += 1
        assert float(row["density"]) >= 0 and math.isfinite(float(row["objective"]))
    assert cells == {f"{i}-{j}": 9 for i, j in itertools.combinations(range(6), 2)}
    assert (modes_dir / "modes.png").is_file() and (modes_dir / "modes_pairs.png").is_file()
    summary = json.loads((modes_dir / "summary.json").read_text())
    assert summary["runs"] == 3 and summary["max_possible_distance"] == pytest.approx(
        2 * math.sqrt(6))


def test_modes_with_one_action_dim_writes_no_pair_grids(modes_ip_dir):
    names = {p.name for p in modes_ip_dir.iterdir()}
    assert {"modes.csv", "modes.png", "summary.json"} <= names
    assert not names & {"modes_pairs.csv", "modes_pairs.png", "modes_runs.csv"}
    assert len(_rows(modes_ip_dir / "modes.csv")) == 3 * IP_STATES


def test_surface_writes_the_grid_and_paths_that_start_at_zero(surface_dir):
    grid = _rows(surface_dir / "surface.csv")
    assert len(grid) == 9 and {row["pair"] for row in grid} == {"1-3"}
    assert {(float(r["a_x"]), float(r["a_y"])) for r in grid} == set(
        itertools.product([-0.995, 0.0, 0.995], repeat=2))
    paths = defaultdict(list)
    for row in _rows(surface_dir / "surface_paths.csv"):
        paths[row["planner"]].append(row)
    assert list(paths) == ["iterative", "adam", "cem", "mppi"]
    for name, path in paths.items():
        assert [int(r["iteration"]) for r in path] == list(range(len(path)))
        assert (float(path[0]["a_x"]), float(path[0]["a_y"])) == (0.0, 0.0), name
    assert len(paths["adam"]) == len(paths["cem"]) == len(paths["mppi"]) == 3  # start + --iters 2
    assert (surface_dir / "surface.png").is_file()
    summary = json.loads((surface_dir / "summary.json").read_text())
    assert summary["dims"] == [1, 3] and summary["grid"] == 3


def test_bias_writes_a_row_per_pair_and_the_discount_left_at_the_horizon(bias_dir):
    rows = _rows(bias_dir / "bias.csv")
    assert [int(r["pair"]) for r in rows] == [0, 1]
    for row in rows:
        assert float(row["bias"]) == pytest.approx(
            float(row["q_hat"]) - float(row["q_mc"]), rel=1e-3, abs=1e-5)
    summary = json.loads((bias_dir / "summary.json").read_text())
    gamma = tiny_config("iterative", "InvertedPendulum-v5").train.gamma
    assert summary["discount_left_at_horizon"] == pytest.approx(gamma ** 3)
    assert (summary["pairs"], summary["rollouts"], summary["horizon"]) == (2, 2, 3)
    assert (bias_dir / "bias.png").is_file()


# plot


@pytest.mark.parametrize("folder, figures", [
    ("compare_run", ["compare.png"]), ("gap_dir", ["gap.png"]),
    ("modes_dir", ["modes.png", "modes_pairs.png"]), ("modes_ip_dir", ["modes.png"]),
    ("surface_dir", ["surface.png"]), ("bias_dir", ["bias.png"])])
def test_plot_redraws_deleted_figures_from_the_folders_files(request, tmp_path, capsys,
                                                            folder, figures):
    src = request.getfixturevalue(folder)
    src = src[0] if isinstance(src, tuple) else src
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    for name in figures:
        (out / name).unlink()
    data = {p.name: p.read_bytes() for p in out.iterdir()}
    code, stdout, _ = run_cli(capsys, "plot", out, "--json")
    assert code == 0
    assert json.loads(stdout) == {"figures": [str(out / name) for name in figures],
                                  "threads": torch.get_num_threads()}
    for name in figures:
        assert (out / name).stat().st_size > 0
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name not in figures} == data


def test_plot_on_an_empty_folder_is_one_error_line(tmp_path, capsys):
    assert "not an analysis folder" in error_line(capsys, "plot", tmp_path)


def test_plot_on_an_unreadable_summary_is_one_error_line(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{not json")
    assert "cannot redraw" in error_line(capsys, "plot", tmp_path)
