"""The statistics deep-RL results are reported with (Agarwal et al., NeurIPS 2021, "Deep RL
at the Edge of the Statistical Precipice"; the ``rliable`` package): the interquartile mean
(IQM), percentile confidence intervals from a stratified bootstrap, the probability of
improvement, and performance profiles. Numpy only.

Scores are arrays ``(runs, tasks)``: one row per seed, one column per task (normalize
returns across tasks first when they are aggregated together). "Stratified" means the
bootstrap resamples the runs within each task, keeping every task in every resample.
"""

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


def iqm(scores: np.ndarray) -> float:
    """Mean of the middle 50% of all scores (scipy's ``trim_mean(scores, 0.25)`` over the
    flattened array: ``int(0.25 n)`` scores cut from each end)."""
    flat = np.sort(np.asarray(scores, dtype=float).ravel())
    cut = int(0.25 * flat.size)
    return float(flat[cut:flat.size - cut].mean())


def _resample(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One stratified bootstrap resample of ``scores`` (runs, tasks): runs drawn with
    replacement, independently for each task."""
    runs, tasks = scores.shape
    rows = rng.integers(0, runs, size=(runs, tasks))
    return scores[rows, np.arange(tasks)]


def _as_table(scores) -> np.ndarray:
    table = np.asarray(scores, dtype=float)
    return table.reshape(-1, 1) if table.ndim == 1 else table


def interval(scores, statistic=iqm, confidence: float = CONFIDENCE,
             resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(point estimate, low, high): ``statistic`` of ``scores`` (runs, tasks) or (runs,) and
    its percentile interval over ``resamples`` stratified bootstrap resamples."""
    table = _as_table(scores)
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(_resample(table, rng)) for _ in range(resamples)])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return statistic(table), float(low), float(high)


def probability_of_improvement(x, y) -> float:
    """P(X > Y) averaged over tasks, ties counting half: for each task the share of (run of
    x, run of y) pairs where x's score is higher (the Mann-Whitney U statistic over n m).
    ``x`` (n, tasks), ``y`` (m, tasks)."""
    x, y = _as_table(x), _as_table(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks and y {y.shape[1]}")
    above = (x[:, None, :] > y[None, :, :]).mean((0, 1))
    ties = (x[:, None, :] == y[None, :, :]).mean((0, 1))
    return float((above + 0.5 * ties).mean())


def improvement_interval(x, y, confidence: float = CONFIDENCE,
                         resamples: int = BOOTSTRAP_RESAMPLES,
                         seed: int = 0) -> tuple[float, float, float]:
    """(P(X > Y), low, high): the probability of improvement and its percentile interval,
    both methods' runs resampled within each task."""
    x, y = _as_table(x), _as_table(y)
    rng = np.random.default_rng(seed)
    draws = np.array([probability_of_improvement(_resample(x, rng), _resample(y, rng))
                      for _ in range(resamples)])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return probability_of_improvement(x, y), float(low), float(high)


def performance_profile(scores, thresholds: np.ndarray) -> np.ndarray:
    """The share of all runs (and tasks) scoring above each threshold: (len(thresholds),)."""
    flat = np.asarray(scores, dtype=float).ravel()
    return (flat[None, :] > np.asarray(thresholds, dtype=float)[:, None]).mean(1)
