"""Where a run's metrics rows go: ``metrics.csv`` (one row per evaluation step) and, with
``train.tensorboard``, TensorBoard event files in ``DIR/tb``: one scalar per numeric column,
tagged with the column's name, at the row's step. ``tensorboard --logdir DIR`` (or a sweep's
folder, one run per subfolder) shows them while the run goes on."""

import csv
import os
from pathlib import Path

from mbiapo.errors import MbiapoError
from mbiapo.paths import temporary, written

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
    """Appends rows to ``out/metrics.csv`` and, with ``tensorboard``, to ``out/tb``. The
    columns are the rows' keys in order of appearance: a row with a key the file lacks
    (a new loss, a metric that starts later) widens the file, earlier rows left empty there,
    so no metric is dropped. A run resumed at ``step`` purges the TensorBoard events after
    it, as resuming drops the CSV rows after it."""

    def __init__(self, out: Path, tensorboard: bool, step: int = 0):
        self.path = out / "metrics.csv"
        self.header: list[str] | None = None
        if self.path.exists():
            with open(self.path, newline="") as f:
                self.header = next(csv.reader(f), None)
        self.tensorboard = None
        if tensorboard:
            self.tensorboard = summary_writer()(str(out / TENSORBOARD_DIR),
                                                purge_step=step + 1 if step else None)

    def write(self, row: dict) -> None:
        """Append ``row``; a failed write (a full disk) is one MbiapoError line (a row cut
        short is dropped when the run resumes: run_folder.recover)."""
        with written(self.path):
            if self.header is None:
                with open(self.path, "w", newline="") as f:
                    csv.writer(f).writerow(list(row))
                self.header = list(row)
            elif row.keys() - set(self.header):
                self._widen([key for key in row if key not in self.header])
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.header).writerow(row)
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self.tensorboard.add_scalar(key, value, row["step"])
            self.tensorboard.flush()

    def _widen(self, keys: list[str]) -> None:
        """Rewrite the file with ``keys`` added as columns (atomically)."""
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        header = [*self.header, *keys]
        tmp = temporary(self.path)
        with written(self.path, tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, header)
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, self.path)
        self.header = header

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
