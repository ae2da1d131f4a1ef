"""``mbiapo report``: mean ± std over seeds from crafted run folders, labels, error paths."""

import csv
import json

import pytest
from omegaconf import OmegaConf

from mbiapo.config import compose
from mbiapo.report import report
from tests.helpers import error_line, run_cli

COLUMNS = ["step", "episodes", "updates", "wall_s", "train_return", "eval_return_mean",
           "eval_return_std", "updates_per_s", "q_loss"]


def make_run(root, name, env, planner, seed, evals, rates, overrides=(), updates=None):
    """A run folder: the composed config and metrics rows {step: eval return or ''}, with
    cumulative ``updates`` (default: one per step)."""
    out = root / name
    out.mkdir(parents=True)
    OmegaConf.save(compose(env, planner, overrides=[f"train.seed={seed}", *overrides]),
                   out / "config.yaml")
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for i, ((step, value), rate) in enumerate(zip(evals.items(), rates)):
            writer.writerow({"step": step, "updates": updates[i] if updates else step,
                             "wall_s": step / 100,
                             "eval_return_mean": value, "eval_return_std": 1.0,
                             "updates_per_s": rate, "q_loss": 0.5})
    return out


@pytest.fixture
def runs(tmp_path):
    ip, idp = "InvertedPendulum-v5", "InvertedDoublePendulum-v5"
    make_run(tmp_path, "sweep/a", ip, "direct", 0, {1000: 10, 2000: 20, 3000: 30}, [100, 150, 300])
    make_run(tmp_path, "sweep/b", ip, "direct", 1, {1000: 20, 2000: 40, 3000: 50}, [90, 90, 90])
    make_run(tmp_path, "sweep/c", ip, "iterative", 0, {1000: 5, 2000: "", 3000: 15}, [30, 30, 30])
    make_run(tmp_path, "sweep/d", ip, "iterative", 1, {1000: 7, 2000: 9, 3000: 25}, [20, 20, 20])
    make_run(tmp_path, "other/e", idp, "direct", 0, {1000: 100}, [50])
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "metrics.csv").write_text("step\n1\n")  # no config.yaml: not a run
    return tmp_path


def by_method(result):
    return {(m["env"], m["method"]): m for m in result["methods"]}


def test_mean_and_population_std_over_seeds(runs):
    result = report(runs)
    assert result["n_runs"] == 5
    methods = by_method(result)
    assert set(methods) == {("InvertedPendulum-v5", "direct"), ("InvertedPendulum-v5",
                            "iterative"), ("InvertedDoublePendulum-v5", "direct")}
    direct = methods[("InvertedPendulum-v5", "direct")]
    assert direct["seeds"] == 2 and direct["steps"] == [1000, 2000, 3000]
    assert direct["mean"] == [15, 30, 40] and direct["std"] == [5, 10, 10]
    assert (direct["final_step"], direct["final_mean"], direct["final_std"]) == (3000, 40, 10)
    # a: 3000 updates in 10 + 6.67 + 3.33 s = 150/s; b: 90/s
    assert direct["updates_per_s"] == pytest.approx((150 + 90) / 2)
    # a seed that missed an evaluation: only the steps every seed evaluated at count
    iterative = methods[("InvertedPendulum-v5", "iterative")]
    assert iterative["steps"] == [1000, 3000] and iterative["mean"] == [6, 20]
    assert iterative["std"] == [1, 5] and iterative["updates_per_s"] == 25
    single = methods[("InvertedDoublePendulum-v5", "direct")]
    assert (single["final_mean"], single["final_std"], single["seeds"]) == (100, 0, 1)


def test_method_names_skip_keys_a_choice_implies(tmp_path):
    # the iterative planner's config sets beta_train=2.5 and the IP env config sets tau:
    # neither names a method; a learning rate that splits runs does
    make_run(tmp_path, "a", "InvertedPendulum-v5", "direct", 0, {1000: 1}, [1])
    make_run(tmp_path, "b", "InvertedPendulum-v5", "iterative", 0, {1000: 2}, [1])
    make_run(tmp_path, "c", "InvertedPendulum-v5", "iterative", 0, {1000: 3}, [1],
             ["train.lr=0.001"])
    make_run(tmp_path, "d", "InvertedDoublePendulum-v5", "direct", 0, {1000: 4}, [1])
    labels = {(m["env"], m["method"]): m["final_mean"] for m in report(tmp_path)["methods"]}
    assert labels == {("InvertedPendulum-v5", "direct, lr=0.0003"): 1,
                      ("InvertedPendulum-v5", "iterative, lr=0.0003"): 2,
                      ("InvertedPendulum-v5", "iterative, lr=0.001"): 3,
                      ("InvertedDoublePendulum-v5", "direct, lr=0.0003"): 4}


def test_cli_json_table_and_figure(runs, capsys):
    code, out, _ = run_cli(capsys, "report", runs / "sweep", "--json")
    result = json.loads(out)
    assert code == 0 and result["n_runs"] == 4 and "table" not in result
    assert (runs / "sweep" / "report.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run_cli(capsys, "report", runs, "--out", runs / "curves.pdf")
    assert code == 0 and (runs / "curves.pdf").read_bytes()[:4] == b"%PDF"
    row = next(line for line in out.splitlines() if "iterative" in line)
    assert row.split()[:4] == ["InvertedPendulum-v5", "iterative", "2", "3000"]
    assert "20.0 ± 5.0" in row and row.split()[-1] == "25.0"


def test_runs_without_evaluations_are_listed(tmp_path):
    # a warm-up interval without updates does not count; then 1000 updates in 125 s
    make_run(tmp_path, "offline", "InvertedPendulum-v5", "direct", 0,
             {500: "", 1000: "", 1500: ""}, [0, 6, 12], updates=[0, 500, 1000])
    (method,) = report(tmp_path)["methods"]
    assert method["final_mean"] is None and method["steps"] == []
    assert method["updates_per_s"] == pytest.approx(8)


def test_bad_input_is_one_line(tmp_path, runs, capsys):
    assert "no such folder" in error_line(capsys, "report", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "no run folders" in error_line(capsys, "report", tmp_path / "empty")
    assert "give a .png/.pdf/.svg file" in error_line(capsys, "report", runs, "--out",
                                                      tmp_path / "r.txt")
    assert "does not exist" in error_line(capsys, "report", runs, "--out",
                                          tmp_path / "missing" / "r.png")
    metrics = runs / "sweep" / "a" / "metrics.csv"
    metrics.write_text(metrics.read_text().replace("20,", "twenty,", 1))
    line = error_line(capsys, "report", runs)
    assert "a/metrics.csv: 'eval_return_mean' holds 'twenty', not a number" in line
    metrics.write_text("step,loss\n1,2\n")
    assert "not an mbiapo metrics file (no eval_return_mean, updates, updates_per_s column)" in \
        error_line(capsys, "report", runs)


def test_iqm_intervals_improvement_and_the_tidy_table(runs, capsys):
    from mbiapo import stats

    result = report(runs / "sweep")
    methods = by_method(result)
    direct = methods[("InvertedPendulum-v5", "direct")]
    assert direct["iqm"] == [stats.iqm([10, 20]), stats.iqm([20, 40]), stats.iqm([30, 50])]
    assert direct["final_iqm"] == list(stats.interval([30, 50]))
    assert all(lo <= mid <= hi for lo, mid, hi in
               zip(direct["iqm_low"], direct["iqm"], direct["iqm_high"]))
    # final returns: direct 30, 50; iterative 15, 25: direct wins every pair
    pairs = {(i["method"], i["over"]): i for i in result["improvements"]}
    assert pairs[("direct", "iterative")]["probability"] == 1.0
    assert pairs[("iterative", "direct")]["probability"] == 0.0
    code, out, _ = run_cli(capsys, "report", runs / "sweep")
    assert code == 0 and "P(direct > iterative) = 1.00 [1.00, 1.00]" in out
    with open(runs / "sweep" / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 + 3 + 2 + 3  # every evaluation of every seed (c missed one)
    assert rows[0] == {"env": "InvertedPendulum-v5", "method": "direct", "seed": "0",
                       "step": "1000", "return": "10"}
    assert (runs / "sweep" / "report-profile.png").read_bytes()[:4] == b"\x89PNG"


def test_a_tidy_csv_reads_back_into_the_same_report(runs, capsys):
    from mbiapo.report import markdown

    folder = report(runs / "sweep")
    code, _, err = run_cli(capsys, "report", runs / "sweep")
    assert code == 0, err
    again = report(runs / "sweep" / "report.csv")
    assert markdown(again) == markdown(folder)
    assert [(m["method"], m["iqm"], m["final_iqm"]) for m in again["methods"]] == \
        [(m["method"], m["iqm"], m["final_iqm"]) for m in folder["methods"]]
    text = markdown(folder)
    # iterative missed 2000 for one seed: the columns are the steps every method evaluated
    assert "| direct | 2 | 15 [10, 20] | 40 [30, 50] | 40 ± 10 |" in text
    assert "| direct over iterative | 1.00 [1.00, 1.00] |" in text
    code, out, _ = run_cli(capsys, "report", runs / "sweep" / "report.csv", "--markdown",
                           "--out", runs / "from-csv.png")
    assert code == 0 and out.startswith(text) and (runs / "from-csv.png").exists()


def test_several_sources_are_read_together(runs, capsys):
    """A folder and a CSV of other runs (results of two releases) make one report."""
    assert run_cli(capsys, "report", runs / "other")[0] == 0
    both = report(runs / "sweep", runs / "other" / "report.csv")
    assert {(m["env"], m["method"]) for m in both["methods"]} == {
        ("InvertedPendulum-v5", "direct"), ("InvertedPendulum-v5", "iterative"),
        ("InvertedDoublePendulum-v5", "direct")}
    assert both["n_runs"] == 5


def test_intervals_do_not_depend_on_source_order_and_a_seed_counts_once(tmp_path, capsys):
    """The bootstrap resamples seeds by position: runs are put in seed order first, so the
    same seeds give the same interval whichever source names them first."""
    finals = [1, 2, 4, 8, 16]  # swapping the sources changes this interval unless sorted
    for seed, final in enumerate(finals):
        part = "first" if seed < 3 else "second"
        make_run(tmp_path, f"{part}/s{seed}", "InvertedPendulum-v5", "direct", seed,
                 {1000: seed, 2000: final}, [10, 10])
    one, two = (report(tmp_path / "first", tmp_path / "second"),
                report(tmp_path / "second", tmp_path / "first"))
    for result in (one, two):
        assert result["methods"][0]["seed_values"] == [0, 1, 2, 3, 4]
    assert one["methods"][0]["final_iqm"] == two["methods"][0]["final_iqm"]
    assert one["methods"][0]["final_iqm"][0] == pytest.approx((2 + 4 + 8) / 3)

    assert run_cli(capsys, "report", tmp_path / "first")[0] == 0  # writes first/report.csv
    line = error_line(capsys, "report", tmp_path / "first", tmp_path / "first" / "report.csv")
    assert "InvertedPendulum-v5, direct: seed 0 is in both" in line
    assert line.endswith("pass each run once")
    assert "seed 3 is in both" in error_line(capsys, "report", tmp_path / "second",
                                             tmp_path / "second")
