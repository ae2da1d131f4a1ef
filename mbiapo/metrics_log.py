"""Where a run's metrics rows go: ``metrics.csv`` (one row per evaluation step) and, with
``train.tensorboard``, TensorBoard event files in ``DIR/tb``: one scalar per numeric column,
tagged with the column's name, at the row's step. ``tensorboard --logdir DIR`` (or a sweep's
folder, one run per subfolder) shows them while the run goes on."""

import csv
from pathlib import Path

from mbiapo.errors import MbiapoError

LOSSES = ("q_loss", "objective", "entropy", "alpha", "model_loss", "distill_kl")
COLUMNS = ("step", "episodes", "updates", "wall_s", "train_return", "eval_return_mean",
           "eval_return_std", "updates_per_s", "threads", *LOSSES, "model_error",
           "model_error_ratio")
TENSORBOARD_DIR = "tb"


def summary_writer():
    """TensorBoard's ``SummaryWriter`` class; one line saying how to install it if missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MbiapoError("train.tensorboard needs the tensorboard package: pip install "
                          "tensorboard (or the mbiapo[tensorboard] extra)") from None
    return SummaryWriter


class MetricsLog:
    """Appends rows to ``out/metrics.csv`` (keeping the columns of a file an older mbiapo
    started) and, with ``tensorboard``, to ``out/tb``. A run resumed at ``step`` purges the
    TensorBoard events after it, as resuming drops the CSV rows after it."""

    def __init__(self, out: Path, tensorboard: bool, step: int = 0):
        path = out / "metrics.csv"
        header = None
        if path.exists():
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, header or COLUMNS, extrasaction="ignore")
        if header is None:
            self.writer.writeheader()
        self.tensorboard = None
        if tensorboard:
            self.tensorboard = summary_writer()(str(out / TENSORBOARD_DIR),
                                                purge_step=step + 1 if step else None)

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self.tensorboard.add_scalar(key, value, row["step"])
            self.tensorboard.flush()

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
