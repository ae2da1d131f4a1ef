"""The issue's learning bar, end to end through the CLI (slow: run with ``pytest -m slow``).

Fast coverage of the same code: tests/test_agent.py (bandit learning for both planners),
tests/test_checkpoint.py (training loop, checkpoints, resume), tests/test_model_based.py
(model learning, model-based updates) and tests/test_transfer.py (model-based training runs)."""

import json

import pytest

from mbiapo.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("planner", ["direct", "iterative"])
def test_inverted_pendulum_reaches_900_in_10k_steps(tmp_path, capsys, planner):
    out = tmp_path / planner
    assert main(["train", "--env", "InvertedPendulum-v5", "--planner", planner, "--steps",
                 "10000", "--seed", "0", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--episodes", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_mean"] >= 900


@pytest.mark.slow
def test_model_based_inverted_pendulum_reaches_900_in_10k_steps(tmp_path, capsys):
    out = tmp_path / "mb"
    assert main(["train", "--env", "InvertedPendulum-v5", "--planner", "iterative", "--value",
                 "model-based", "--steps", "10000", "--seed", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--episodes", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_mean"] >= 900
