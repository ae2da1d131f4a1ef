"""Learning-curve reports over run folders (the paper's Fig. 5): evaluation return vs env
steps, one panel per env and one line per method, with the field's statistics (``stats``):
the interquartile mean over seeds and its 95% stratified-bootstrap interval at every step,
the probability that each method improves on each other one at the final step, and a
performance profile of final returns; plus mean ± std, updates/s, and a tidy per-seed table
(env, method, seed, step, return) that others can load. A run folder is any folder holding
config.yaml and metrics.csv (a sweep's, or runs gathered by hand).

A *method* is what tells runs of one env apart besides the seed: the fewest config keys whose
values split them (planner.name, value.kind, then any other), or the planner's name when
nothing does. Std is over seeds, population (ddof=0), like every mbiapo summary.
"""

import csv
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbiapo import stats
from mbiapo.config import flatten, load_yaml
from mbiapo.errors import MbiapoError
from mbiapo.paths import check_writable_file, temporary, written

NOT_METHOD = {"env.id", "train.seed", "train.steps", "train.device"}
PRIMARY = ["planner.name", "value.kind"]


@dataclass
class RunCurve:
    out: Path
    config: dict  # flattened: {"planner.name": ..., "train.lr": ...}
    steps: np.ndarray  # (E,) env steps of the evaluations
    returns: np.ndarray  # (E,) mean evaluation return at each
    updates_per_s: float  # training throughput, evaluation excluded (see _throughput)


def find_runs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise MbiapoError(f"{root}: no such folder")
    runs = sorted(p.parent for p in root.rglob("metrics.csv")
                  if (p.parent / "config.yaml").is_file())
    if not runs:
        raise MbiapoError(f"{root}: no run folders (config.yaml + metrics.csv) found")
    return runs


def _number(text: str | None, path: Path, column: str) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        raise MbiapoError(f"{path}: '{column}' holds {text!r}, not a number") from None


def read_rows(out: Path) -> list[dict]:
    """Every row of ``out/metrics.csv``, oldest first: numbers as int or float, empty cells
    as None, text as it is; one MbiapoError for a missing or unreadable file."""
    path = out / "metrics.csv"
    try:
        with open(path, newline="") as f:
            return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise MbiapoError(f"{path}: cannot read the metrics ({e})") from None


def _cell(text: str | None):
    if text in (None, ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_run(out: Path) -> RunCurve:
    """One run folder's config and evaluation curve; one MbiapoError for an unreadable file."""
    config = flatten(load_yaml(out / "config.yaml"))
    path = out / "metrics.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"step", "updates", "eval_return_mean", "updates_per_s"} \
            - set(reader.fieldnames or [])
        if missing:
            raise MbiapoError(f"{path}: not an mbiapo metrics file (no "
                              f"{', '.join(sorted(missing))} column)")
        columns = ("step", "updates", "eval_return_mean", "updates_per_s")
        table = np.array([[_number(row[c], path, c) for c in columns] for row in reader],
                         dtype=float).reshape(-1, len(columns))
    steps, updates, returns, rates = table.T
    evaluated = ~np.isnan(returns)
    return RunCurve(out, config, steps[evaluated].astype(int), returns[evaluated],
                    _throughput(updates, rates))


def _throughput(updates: np.ndarray, rates: np.ndarray) -> float:
    """Updates per second of the intervals that updated: each metrics row gives the interval's
    updates and rate, so its time is their ratio (warm-up rows without updates drop out)."""
    done = np.diff(updates, prepend=0.0)
    timed = (done > 0) & (rates > 0)
    return float(done[timed].sum() / (done[timed] / rates[timed]).sum()) if timed.any() \
        else math.nan


def _label(config: dict, keys: list[str]) -> str:
    if not keys:
        return str(config.get("planner.name", "run"))
    return ", ".join(str(config.get(k)) if isinstance(config.get(k), str)
                     else f"{k.rsplit('.', 1)[-1]}={config.get(k)}" for k in keys)


def method_keys(runs: list[RunCurve]) -> list[str]:
    """The fewest config keys that tell the runs of each env apart (seeds aside): planner.name
    and value.kind first, then any other key that still splits a group. Keys a choice implies
    (the beta the iterative planner's config sets) add nothing and are left out."""
    keys = sorted({k for run in runs for k in run.config} - NOT_METHOD,
                  key=lambda k: (k not in PRIMARY, PRIMARY.index(k) if k in PRIMARY else 0, k))
    chosen: list[str] = []

    def groups(keys: list[str]) -> int:
        return len({tuple(repr(run.config.get(k)) for k in ["env.id", *keys]) for run in runs})

    for key in keys:
        if groups([*chosen, key]) > groups(chosen):
            chosen.append(key)
    return chosen


def group_runs(runs: list[RunCurve]) -> dict[tuple[str, str], list[RunCurve]]:
    """{(env id, method label): runs}."""
    keys = method_keys(runs)
    groups = defaultdict(list)
    for run in runs:
        groups[(str(run.config.get("env.id")), _label(run.config, keys))].append(run)
    return dict(sorted(groups.items()))


def summarize(runs: list[RunCurve]) -> dict:
    """Mean ± std over the runs (seeds) at the steps every one of them evaluated at; the final
    return is at the last such step."""
    common = set(runs[0].steps.tolist())
    for run in runs[1:]:
        common &= set(run.steps.tolist())
    steps = np.array(sorted(common), dtype=int)
    values = np.array([[run.returns[run.steps.tolist().index(s)] for s in steps]
                       for run in runs]).reshape(len(runs), len(steps))
    mean, std = values.mean(0), values.std(0)
    iqm = [stats.interval(values[:, k]) for k in range(len(steps))]  # (point, low, high)
    rates = [run.updates_per_s for run in runs if not math.isnan(run.updates_per_s)]
    return {"seeds": len(runs), "runs": [str(run.out) for run in runs],
            "seed_values": [run.config.get("train.seed") for run in runs],
            "steps": steps.tolist(), "mean": mean.tolist(), "std": std.tolist(),
            "iqm": [i[0] for i in iqm], "iqm_low": [i[1] for i in iqm],
            "iqm_high": [i[2] for i in iqm],
            "final_returns": values[:, -1].tolist() if len(steps) else [],
            "final_step": int(steps[-1]) if len(steps) else None,
            "final_mean": float(mean[-1]) if len(steps) else None,
            "final_std": float(std[-1]) if len(steps) else None,
            "final_iqm": list(iqm[-1]) if len(steps) else None,
            "updates_per_s": float(np.mean(rates)) if rates else None}


def improvements(methods: list[dict]) -> list[dict]:
    """For each env, each ordered pair of its methods with final returns: P(first > second)
    over seeds at their final steps, with its 95% bootstrap interval."""
    found = []
    for a in methods:
        for b in methods:
            if a["env"] == b["env"] and a["method"] != b["method"] \
                    and a["final_returns"] and b["final_returns"]:
                point, low, high = stats.improvement_interval(a["final_returns"],
                                                              b["final_returns"])
                found.append({"env": a["env"], "method": a["method"], "over": b["method"],
                              "probability": point, "low": low, "high": high})
    return found


def tidy_rows(groups: dict[tuple[str, str], list[RunCurve]]) -> list[dict]:
    """One row per (env, method, seed, step): the evaluation return of that run there."""
    return [{"env": env, "method": method, "seed": run.config.get("train.seed"),
             "step": int(step), "return": float(value)}
            for (env, method), runs in groups.items() for run in runs
            for step, value in zip(run.steps, run.returns)]


TIDY_COLUMNS = ["env", "method", "seed", "step", "return"]


def write_tidy(result: dict, path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, TIDY_COLUMNS)
        writer.writeheader()
        writer.writerows({**row, "return": f"{row['return']:.6g}"} for row in result["rows"])
    return path


def read_tidy(path: Path) -> dict[tuple[str, str], list[RunCurve]]:
    """The runs of a tidy CSV (``write_tidy``'s columns), grouped by (env, method); they
    carry no throughput."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if set(TIDY_COLUMNS) - set(reader.fieldnames or []):
                raise MbiapoError(f"{path}: not a tidy results file (columns "
                                  f"{', '.join(TIDY_COLUMNS)})")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MbiapoError(f"{path}: cannot read ({e})") from None
    curves = defaultdict(list)
    for row in rows:
        key = (row["env"], row["method"], int(_number(row["seed"], path, "seed")))
        curves[key].append((int(_number(row["step"], path, "step")),
                            _number(row["return"], path, "return")))
    groups = defaultdict(list)
    for (env, method, seed), points in sorted(curves.items()):
        steps, returns = (np.array(column) for column in zip(*sorted(points)))
        groups[(env, method)].append(RunCurve(path, {"env.id": env, "train.seed": seed},
                                              steps.astype(int), returns, math.nan))
    return dict(groups)


def _by_seed(key: tuple[str, str], runs: list[RunCurve]) -> list[RunCurve]:
    """One (env, method)'s runs in seed order, so its intervals do not depend on the order
    the sources came in. A seed twice is an error: a tidy CSV passed beside the run folders
    it was made from would otherwise count each of its runs twice."""
    def seed(run: RunCurve):
        return run.config.get("train.seed")

    runs = sorted(runs, key=lambda run: (seed(run) is None, seed(run) or 0, str(run.out)))
    for a, b in zip(runs, runs[1:]):
        if seed(a) is not None and seed(a) == seed(b):
            raise MbiapoError(f"{key[0]}, {key[1]}: seed {seed(a)} is in both {a.out} and "
                              f"{b.out}; pass each run once")
    return runs


def report(*roots: Path) -> dict:
    """{"methods": [{"env", "method", "seeds", "steps", "mean", "std", "iqm", ...,
    "updates_per_s", "runs"}, ...], "improvements": [...], "rows": [tidy rows]} for the run
    folders under the ``roots`` that are folders and the runs of those that are tidy CSV
    files (results committed by different releases read together)."""
    folders = [root for root in roots if not root.is_file()]
    groups = defaultdict(list)
    if folders:
        for key, runs in group_runs([read_run(out) for root in folders
                                     for out in find_runs(root)]).items():
            groups[key] += runs
    for root in roots:
        if root.is_file():
            for key, runs in read_tidy(root).items():
                groups[key] += runs
    groups = {key: _by_seed(key, runs) for key, runs in sorted(groups.items())}
    methods = [{"env": env, "method": method, **summarize(group)}
               for (env, method), group in groups.items()]
    return {"root": ", ".join(map(str, roots)), "n_runs": sum(len(g) for g in groups.values()),
            "methods": methods, "improvements": improvements(methods),
            "rows": tidy_rows(groups)}


def table(result: dict) -> str:
    head = (f"{'env':<28} {'method':<24} {'seeds':>5} {'step':>8} {'IQM [95% CI]':>26} "
            f"{'mean ± std':>18} {'upd/s':>7}")
    lines = [head, "-" * len(head)]
    for m in result["methods"]:
        iqm = "no evaluations" if m["final_iqm"] is None else \
            "{:.1f} [{:.1f}, {:.1f}]".format(*m["final_iqm"])
        final = "" if m["final_mean"] is None else \
            f"{m['final_mean']:.1f} ± {m['final_std']:.1f}"
        rate = "" if m["updates_per_s"] is None else f"{m['updates_per_s']:.1f}"
        lines.append(f"{m['env']:<28} {m['method']:<24} {m['seeds']:>5} "
                     f"{m['final_step'] or '':>8} {iqm:>26} {final:>18} {rate:>7}")
    for i in result.get("improvements", []):
        lines.append(f"{i['env']}: P({i['method']} > {i['over']}) = {i['probability']:.2f} "
                     f"[{i['low']:.2f}, {i['high']:.2f}]")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The report as markdown, for docs: per env, each method's IQM [95% CI] at up to three
    steps every method evaluated (a third, two thirds and all of the way), its final mean
    ± std and seeds; then each probability of improvement with its interval."""
    blocks = []
    for env in sorted({m["env"] for m in result["methods"]}):
        methods = [m for m in result["methods"] if m["env"] == env and m["steps"]]
        common = sorted(set.intersection(*(set(m["steps"]) for m in methods))) \
            if methods else []
        if not common:
            continue
        marks = sorted({min(common, key=lambda s: abs(s - common[-1] * f))
                        for f in (1 / 3, 2 / 3, 1)})
        head = " | ".join(f"IQM at {mark:,} [95% CI]" for mark in marks)
        lines = [f"**{env}**", "", f"| method | seeds | {head} | mean ± std at {marks[-1]:,} |",
                 "|---|---|" + "---|" * len(marks) + "---|"]
        for m in methods:
            cells = []
            for mark in marks:
                k = m["steps"].index(mark)
                cells.append(f"{m['iqm'][k]:.0f} [{m['iqm_low'][k]:.0f}, "
                             f"{m['iqm_high'][k]:.0f}]")
            k = m["steps"].index(marks[-1])
            lines.append(f"| {m['method']} | {m['seeds']} | {' | '.join(cells)} | "
                         f"{m['mean'][k]:.0f} ± {m['std'][k]:.0f} |")
        pairs = [i for i in result["improvements"] if i["env"] == env]
        if pairs:
            lines += ["", "| probability of improvement (final) | P [95% CI] |", "|---|---|"]
            lines += [f"| {i['method']} over {i['over']} | {i['probability']:.2f} "
                      f"[{i['low']:.2f}, {i['high']:.2f}] |" for i in pairs]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({m["env"] for m in result["methods"]})
    cols = min(3, len(envs))
    rows = math.ceil(len(envs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, env in zip(axes.flat, envs):
        for m in (m for m in result["methods"] if m["env"] == env and m["steps"]):
            steps, iqm, low, high = (np.array(m[k]) for k in ("steps", "iqm", "iqm_low",
                                                                "iqm_high"))
            ax.plot(steps, iqm, label=f"{m['method']} ({m['seeds']})")
            ax.fill_between(steps, low, high, alpha=0.2)
        ax.set(title=env, xlabel="env steps", ylabel="evaluation return (IQM, 95% CI)")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_profile(result: dict, path: Path) -> Path:
    """Performance profiles of the final returns: per env, the share of runs scoring above
    each threshold, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({m["env"] for m in result["methods"] if m["final_returns"]})
    fig, axes = plt.subplots(1, max(1, len(envs)), figsize=(5 * max(1, len(envs)), 3.6),
                             squeeze=False)
    for ax, env in zip(axes.flat, envs):
        methods = [m for m in result["methods"] if m["env"] == env and m["final_returns"]]
        finals = np.concatenate([m["final_returns"] for m in methods])
        thresholds = np.linspace(finals.min(), finals.max(), 100)
        for m in methods:
            ax.plot(thresholds, stats.performance_profile(m["final_returns"], thresholds),
                    label=m["method"])
        ax.set(title=env, xlabel="final return τ", ylabel="fraction of runs > τ")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
PAGE_BLOCK = re.compile(r"<!-- report ([^>]+?) -->\n(.*?)<!-- end report -->", re.S)


def profile_path(figure: Path) -> Path:
    """Where the performance profile goes beside the curves' ``figure``."""
    return figure.with_name(f"{figure.stem}-profile{figure.suffix}")


def check_figure(figure: Path, flag: str = "--out") -> None:
    if figure.suffix not in FIGURE_SUFFIXES:
        raise MbiapoError(f"{flag} {figure}: give a {'/'.join(FIGURE_SUFFIXES)} file")
    for path in (figure, profile_path(figure)):
        check_writable_file(path, flag)


def _block_sources(spec: str, root: Path, page: str) -> tuple[list[Path], Path | None]:
    """A generated block's marker ``SOURCE... [--out FIGURE]``: its sources and figure, the
    paths taken relative to ``root``."""
    words = spec.split()
    figure = None
    if "--out" in words:
        at = words.index("--out")
        if at + 1 == len(words):
            raise MbiapoError(f"{page}: '<!-- report {spec} -->' names no figure after --out")
        figure = root / words.pop(at + 1)
        words.pop(at)
    if not words:
        raise MbiapoError(f"{page}: '<!-- report {spec} -->' names no results to read")
    return [root / word for word in words], figure


def render_page(text: str, root: Path,
                page: str = "page") -> tuple[str, list[tuple[dict, Path | None]]]:
    """``text`` (markdown) with every generated block rebuilt: a block runs from
    ``<!-- report SOURCE... [--out FIGURE] -->`` to ``<!-- end report -->`` and holds
    ``markdown(report(SOURCE...))``, the sources (tidy CSVs or folders of run folders) and
    figure named relative to ``root``. Also each block's report and figure (or None)."""
    blocks = []

    def generate(match: re.Match) -> str:
        sources, figure = _block_sources(match[1], root, page)
        result = report(*sources)
        blocks.append((result, figure))
        return f"<!-- report {match[1]} -->\n{markdown(result)}<!-- end report -->"

    rebuilt = PAGE_BLOCK.sub(generate, text)
    if not blocks:
        raise MbiapoError(f"{page}: no generated blocks ('<!-- report SOURCE... -->' to "
                          "'<!-- end report -->')")
    return rebuilt, blocks


def update_page(page: Path, root: Path) -> dict:
    """Rebuild ``page``'s generated blocks (``render_page``) in place and redraw each block's
    figure and performance profile: {"out" (the page), "blocks", "changed", "figures"}."""
    try:
        text = page.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise MbiapoError(f"--page {page}: cannot read ({e.strerror or e})") from None
    rebuilt, blocks = render_page(text, root, str(page))
    figures = [figure for _, figure in blocks if figure is not None]
    check_writable_file(page, "--page")
    for figure in figures:
        check_figure(figure, f"{page}: --out")
    drawn = []
    for result, figure in blocks:
        if figure is not None:
            drawn += [str(plot(result, figure)), str(plot_profile(result, profile_path(figure)))]
    changed = rebuilt != text
    if changed:
        partial = temporary(page)
        with written(page, partial):
            partial.write_text(rebuilt)
            os.replace(partial, page)
    return {"out": str(page), "blocks": len(blocks), "changed": changed, "figures": drawn}
