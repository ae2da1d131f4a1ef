"""The report's statistics against hand computations and their promised coverage."""

import numpy as np
import pytest

from mbiapo import stats


def test_iqm_is_the_mean_of_the_middle_half():
    # 8 scores: the 2 lowest and 2 highest go, the middle 4 are averaged
    assert stats.iqm([10, 1, 7, 3, 100, 5, -50, 6]) == pytest.approx((3 + 5 + 6 + 7) / 4)
    # a (runs, tasks) table counts every score; 6 scores: int(1.5) = 1 cut from each end
    assert stats.iqm([[1, 2], [3, 4], [1000, 5]]) == pytest.approx((2 + 3 + 4 + 5) / 4)
    # 5 scores (5 seeds): int(1.25) = 1 from each end
    assert stats.iqm([4.0, -1.0, 9.0, 2.0, 3.0]) == pytest.approx((2 + 3 + 4) / 3)


def test_the_bootstrap_interval_covers_the_truth_at_least_90_times_in_100():
    """Normal scores: the population IQM is the mean (a symmetric law), here 3.0."""
    rng = np.random.default_rng(1)
    covered = 0
    for draw in range(100):
        scores = rng.normal(3.0, 2.0, size=(40, 1))
        _, low, high = stats.interval(scores, resamples=400, seed=draw)
        covered += low <= 3.0 <= high
    assert covered >= 90, covered


def test_the_interval_is_stratified_every_task_stays_in_every_resample():
    """Two tasks of constant but different scores: a resample mixing tasks would move the
    IQM; resampling within each task cannot."""
    scores = np.stack([np.full(6, 1.0), np.full(6, 5.0)], 1)  # (6 runs, 2 tasks)
    point, low, high = stats.interval(scores, resamples=200)
    assert point == low == high == pytest.approx(3.0)


def test_probability_of_improvement_counts_pairs_and_half_the_ties():
    x = np.array([[1.0], [3.0], [5.0]])
    y = np.array([[2.0], [3.0]])
    # pairs (x > y): 3>2, 5>2, 5>3 = 3; ties: 3=3 -> 0.5; over 6 pairs
    assert stats.probability_of_improvement(x, y) == pytest.approx(3.5 / 6)
    assert stats.probability_of_improvement(y, x) == pytest.approx(1 - 3.5 / 6)
    two_tasks = stats.probability_of_improvement(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert two_tasks == pytest.approx(0.5)  # wins one task, loses the other
    point, low, high = stats.improvement_interval(x + 10, y, resamples=200)
    assert point == low == high == 1.0


def test_the_performance_profile_is_the_share_above_each_threshold():
    profile = stats.performance_profile([[1, 2], [3, 4]], np.array([0, 1.5, 3, 4]))
    assert profile.tolist() == [1.0, 0.75, 0.25, 0.0]
