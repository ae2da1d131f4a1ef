"""The thread policy (mbiapo/threads.py): auto's choice from usable and busy cores, the
setting's paths (--threads, train.threads) and what a run records."""

import csv
import json
import subprocess
import sys
import time

import pytest
import torch

from mbiapo import threads
from tests.helpers import error_line, run_cli


class _Stub:
    """A CpuMeter that reports ``busy`` cores held by other processes."""

    def __init__(self, busy):
        self.busy = busy

    def others(self):
        return self.busy


@pytest.fixture
def spinner():
    """One CPU-bound child process for every usable core but one."""
    cores = len(threads.usable_cpus())
    if cores < 2:
        pytest.skip("needs two usable cores")
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(cores - 1)]
    time.sleep(0.5)  # let them be scheduled
    yield
    for p in procs:
        p.kill()
        p.wait()


def test_auto_takes_one_thread_when_a_spinning_child_holds_the_other_cores(spinner,
                                                                           monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    choice = threads.ThreadPolicy(threads.AUTO).apply()
    assert choice.threads == 1 and torch.get_num_threads() == 1
    assert choice.busy >= len(threads.usable_cpus()) - 1 - threads.BUSY_CORE


def test_auto_takes_every_core_when_none_is_busy(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    policy = threads.ThreadPolicy(threads.AUTO, cpus=[0, 1, 2, 3], meter=_Stub(0.0))
    assert policy.apply(sample_s=0).threads == 4 and torch.get_num_threads() == 4


@pytest.mark.parametrize("busy, expected", [(0.0, 4), (0.4, 4), (0.6, 3), (1.0, 3),
                                            (2.7, 1), (9.0, 1), (None, 4)])
def test_auto_rule_subtracts_the_cores_others_keep_busy(busy, expected):
    assert threads.choose(4, busy) == expected


def test_omp_num_threads_caps_the_usable_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    policy = threads.ThreadPolicy(threads.AUTO, cpus=[0, 1, 2, 3], meter=_Stub(0.0))
    assert policy.apply(sample_s=0).threads == 2


def test_refresh_rechooses_only_after_its_interval(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    meter = _Stub(0.0)
    policy = threads.ThreadPolicy(threads.AUTO, cpus=[0, 1], meter=meter)
    assert policy.apply(sample_s=0).threads == 2
    meter.busy = 1.0
    assert policy.refresh() == 2  # too soon
    monkeypatch.setattr(threads, "RECHECK_S", 0.0)
    assert policy.refresh() == 1 and torch.get_num_threads() == 1
    meter.busy = 0.0
    assert policy.refresh() == 2 and torch.get_num_threads() == 2


def test_cpu_meter_counts_busy_time_of_its_cpus_less_this_process(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    line = "cpu{} {} 0 {} 500 7 0 0 0 0 0"  # user nice system idle iowait ...

    def write(busy0, busy1, busy9):
        stat.write_text("\n".join(["cpu  1 2 3 4 5 6 7 8 0 0", line.format(0, busy0, 0),
                                   line.format(1, busy1, 0), line.format(9, busy9, 0),
                                   "intr 1 2 3"]))

    clock = {"wall": 100.0, "own": 5.0}
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(threads.time, "process_time", lambda: clock["own"])
    write(0, 0, 0)
    meter = threads.CpuMeter([0, 1], stat)
    meter.tick = 100
    # 2 s: cpu0 busy 1.5 s, cpu1 1.0 s (cpu9 is not ours); this process used 0.5 s of it
    write(150, 100, 10_000)
    clock["wall"], clock["own"] = 102.0, 5.5
    assert meter.others() == pytest.approx((2.5 - 0.5) / 2)
    stat.unlink()
    assert meter.others() is None  # no /proc/stat: auto then takes every usable core
    assert threads.choose(2, None) == 2


def test_a_number_is_set_as_given():
    choice = threads.ThreadPolicy(1).apply()
    assert choice.threads == 1 and torch.get_num_threads() == 1 and choice.busy is None
    assert threads.ThreadPolicy("3").apply().threads == 3 == torch.get_num_threads()


def test_bad_settings_are_one_error_line(capsys, tiny_cfg):
    for bad in ("0", "-2", "many", "1.5"):
        line = error_line(capsys, "dataset", "info", "x.h5", "--threads", bad)
        assert "threads must be 'auto' or a whole number >= 1" in line
    from mbiapo.errors import MbiapoError

    with pytest.raises(MbiapoError, match="threads must be"):
        tiny_cfg(**{"train.threads": "none"})


def test_commands_report_the_thread_count_they_ran_with(capsys):
    replay = threads.__file__.replace("threads.py", "pretrained/ip-iterative/replay.h5")
    for setting in ("1", "2"):
        code, out, _ = run_cli(capsys, "dataset", "info", replay, "--threads", setting,
                               "--json")
        assert code == 0 and json.loads(out)["threads"] == int(setting)


def test_train_records_threads_per_row_and_the_flag_wins_over_the_config(capsys, tmp_path):
    argv = ["--env", "InvertedPendulum-v5", "--steps", "60", "--json",
            "train.warmup_steps=50", "train.eval_every=30", "train.eval_episodes=1",
            "env.max_episode_steps=20", "planner.hidden=16", "value.hidden=16"]
    code, out, _ = run_cli(capsys, "train", "--out", tmp_path / "a", *argv, "train.threads=1")
    assert code == 0 and json.loads(out)["threads"] == 1
    with open(tmp_path / "a" / "metrics.csv", newline="") as f:
        assert [row["threads"] for row in csv.DictReader(f)] == ["1", "1"]
    code, out, _ = run_cli(capsys, "train", "--out", tmp_path / "b", "--threads", "2", *argv,
                           "train.threads=1")
    assert code == 0 and json.loads(out)["threads"] == 2
    assert "threads: '2'" in (tmp_path / "b" / "config.yaml").read_text()
    code, out, _ = run_cli(capsys, "train", "--resume", tmp_path / "a", "--steps", "90",
                           "--threads", "2", "--json")
    assert code == 0 and json.loads(out)["threads"] == 2
