"""TensorBoard logging: a run with train.tensorboard writes metrics.csv's scalars to DIR/tb,
read back here with TensorBoard's own reader; a resume purges the events past its
checkpoint, as it drops the CSV rows."""

import csv
import sys

import pytest

from mbiapo.train import resume_run
from tests.helpers import TINY, error_line, run_cli

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_logs_the_metrics_rows(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--env", "InvertedPendulum-v5", "--steps", "200",
                           "--out", out, "--tensorboard", *TINY)
    assert code == 0, err
    scalars = _scalars(out / "tb")
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for tag in ("eval_return_mean", "train_return", "q_loss", "objective", "entropy", "alpha",
                "episodes", "updates_per_s", "wall_s"):
        assert [step for step, _ in scalars[tag]] == [100, 200], tag
        assert scalars[tag][-1][1] == pytest.approx(float(rows[-1][tag]), rel=1e-5), tag



class _Killed(BaseException):
    """Stands in for SIGKILL: nothing more is saved."""


def test_a_resume_purges_the_events_past_its_checkpoint(tmp_path, monkeypatch):
    """Killed at step 300 with the checkpoint at 200: the resumed run logs 300 again, once."""
    from mbiapo.config import compose
    from mbiapo.train import start_run

    cfg = compose("InvertedPendulum-v5", overrides=[*TINY, "train.steps=400",
                                                    "train.checkpoint_every=200",
                                                    "train.tensorboard=true"])
    trainer = start_run(cfg, tmp_path / "run")
    report = trainer.report

    def killed_after_row_300(*args):
        row = report(*args)
        if trainer.step == 300:
            raise _Killed
        return row

    monkeypatch.setattr(trainer, "report", killed_after_row_300)
    with pytest.raises(_Killed):
        trainer.run()
    assert [step for step, _ in _scalars(tmp_path / "run" / "tb")["q_loss"]] == [100, 200, 300]
    resume_run(tmp_path / "run", steps=None).run()
    assert [step for step, _ in _scalars(tmp_path / "run" / "tb")["q_loss"]] == [100, 200,
                                                                                 300, 400]


def test_without_tensorboard_one_line_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises
    line = error_line(capsys, "train", "--env", "InvertedPendulum-v5", "--out",
                      tmp_path / "run", "--tensorboard", *TINY)
    assert "train.tensorboard needs the tensorboard package: pip install tensorboard" in line
    assert not (tmp_path / "run").exists()
