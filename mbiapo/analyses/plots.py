"""Figures, drawn only from the files an analysis wrote (``mbiapo plot DIR`` redraws them)."""

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mbiapo.analyses.common import read_csv  # noqa: E402
from mbiapo.errors import MbiapoError  # noqa: E402


def _grouped(rows: list[dict], key: str) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    return groups


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_compare(out: Path) -> list[Path]:
    """J vs iteration and J vs seconds, mean +- std over states (paper Fig. 18)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in _grouped(read_csv(out / "compare.csv"), "planner").items():
        by_iter = _grouped(rows, "iteration")
        iters = np.array(sorted(by_iter))
        values = np.array([[r["objective"] for r in by_iter[k]] for k in iters])
        seconds = np.array([by_iter[k][0]["seconds"] for k in iters])
        mean, std = values.mean(1), values.std(1)
        for ax, x in zip(axes, (iters, seconds)):
            if len(x) == 1:  # a direct planner: one step, drawn as a level
                line = ax.axhline(mean[0], ls="--", label=name)
                ax.plot(x, mean, "o", color=line.get_color())
            else:
                ax.plot(x, mean, label=name)
                ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    axes[0].set(xscale="log", xlabel="iteration", ylabel="J (mean ± std over states)")
    axes[1].set(xscale="log", xlabel="seconds (all states in one batch)")
    axes[0].legend()
    return [_save(fig, out / "compare.png")]


def plot_gap(out: Path) -> list[Path]:
    """Amortization gap per planner, mean +- std over states (paper Fig. 6)."""
    groups = _grouped(read_csv(out / "gap.csv"), "planner")
    names = list(groups)
    gaps = [np.array([r["gap"] for r in groups[n]]) for n in names]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4))
    ax.bar(names, [g.mean() for g in gaps], yerr=[g.std() for g in gaps], capsize=4)
    ax.set(ylabel="J(refined) - J(estimate)", title="amortization gap")
    return [_save(fig, out / "gap.png")]


def _pair_panels(rows: list[dict], points: list[dict], path: Path, title: str,
                 connect: bool = True) -> Path:
    """One panel per pair of action dims: J filled contours, density lines if given, and
    labelled points (joined into paths if ``connect``)."""
    pairs = _grouped(rows, "pair")
    cols = min(len(pairs), 5)
    size = 3.2 if len(pairs) > 1 else 5.5
    fig, axes = plt.subplots((len(pairs) + cols - 1) // cols, cols,
                             figsize=(size * cols, size * 0.95 * ((len(pairs) + cols - 1) // cols)),
                             squeeze=False)
    for ax, (pair, cells) in zip(axes.flat, pairs.items()):
        g = int(round(len(cells) ** 0.5))
        ax_x = np.array([c["a_x"] for c in cells]).reshape(g, g)
        ax_y = np.array([c["a_y"] for c in cells]).reshape(g, g)
        j = np.array([c["objective"] for c in cells]).reshape(g, g)
        filled = ax.contourf(ax_x, ax_y, j, levels=20, cmap="viridis")
        if len(pairs) == 1:
            fig.colorbar(filled, ax=ax, label="J")
        best = np.unravel_index(j.argmax(), j.shape)
        ax.plot(ax_x[best], ax_y[best], "r*", ms=12, label="best on grid")
        if "density" in cells[0]:
            ax.contour(ax_x, ax_y, np.array([c["density"] for c in cells]).reshape(g, g),
                       levels=6, colors="white", linewidths=0.7)
        dx, dy = (int(d) for d in str(pair).split("-"))
        for label, group in _grouped([p for p in points if p["pair"] == pair], "label").items():
            ax.plot([p["a_x"] for p in group], [p["a_y"] for p in group],
                    ".-" if connect else "o", ms=4 if connect else 6, mfc="none" if not connect
                    else None, label=label)
        ax.set(xlabel=f"a[{dx}]", ylabel=f"a[{dy}]", xlim=(-1, 1), ylim=(-1, 1))
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    if points:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def plot_modes(out: Path) -> list[Path]:
    """Histogram of distances between runs (paper Fig. 7a) and, for the state with the
    largest distance, J and the runs' mixture density on each pair of action dims (7b, c)."""
    summary = json.loads((out / "summary.json").read_text())
    distances = np.array([r["distance"] for r in read_csv(out / "modes.csv")])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hist(distances, bins=40, range=(0, summary["max_possible_distance"]))
    ax.set(xlabel="||tanh(mu_i) - tanh(mu_j)||", ylabel="pairs of runs",
           title=f"{summary['runs']} runs x {summary['states']} states")
    figures = [_save(fig, out / "modes.png")]
    if (out / "modes_pairs.csv").is_file():  # absent with a single action dim
        runs = [r | {"label": "runs"} for r in read_csv(out / "modes_runs.csv")]
        figures.append(_pair_panels(read_csv(out / "modes_pairs.csv"), runs,
                                    out / "modes_pairs.png", connect=False,
                                    title=f"state {summary['widest_state']}: J and the "
                                    f"runs' density"))
    return figures


def plot_surface(out: Path) -> list[Path]:
    """J over two action dims with each planner's path (paper Figs. 1, 19)."""
    summary = json.loads((out / "summary.json").read_text())
    paths = [r | {"label": r["planner"]} for r in read_csv(out / "surface_paths.csv")]
    return [_pair_panels(read_csv(out / "surface.csv"), paths, out / "surface.png",
                         f"state {summary['state']}")]


def plot_bias(out: Path) -> list[Path]:
    """Estimated vs Monte Carlo Q on uniform state-action pairs (paper Fig. 3a)."""
    rows = read_csv(out / "bias.csv")
    q_hat, q_mc = (np.array([r[k] for r in rows]) for k in ("q_hat", "q_mc"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].scatter(q_mc, q_hat, s=10)
    low, high = min(q_mc.min(), q_hat.min()), max(q_mc.max(), q_hat.max())
    axes[0].plot([low, high], [low, high], "k--", lw=1)
    axes[0].set(xlabel="Monte Carlo Q", ylabel="estimated Q")
    axes[1].hist(q_hat - q_mc, bins=30)
    axes[1].set(xlabel="estimated - Monte Carlo", ylabel="pairs",
                title=f"bias {np.mean(q_hat - q_mc):.3g} ± {np.std(q_hat - q_mc):.3g}")
    return [_save(fig, out / "bias.png")]


PLOTS = {"compare": plot_compare, "gap": plot_gap, "modes": plot_modes,
         "surface": plot_surface, "bias": plot_bias}


def replot(out: Path) -> list[Path]:
    """Redraw the figures of an analysis folder from its files."""
    try:
        analysis = json.loads((out / "summary.json").read_text())["analysis"]
        return PLOTS[analysis](out)
    except FileNotFoundError as e:
        raise MbiapoError(f"{out}: not an analysis folder ({e.filename} is missing)") from None
    except (KeyError, ValueError, TypeError) as e:
        raise MbiapoError(f"{out}: cannot redraw its figures ({type(e).__name__}: {e})") from None
