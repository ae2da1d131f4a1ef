"""The plugin of docs/plugins.md, copied from the page, runs through every command and the
Python API as its own process would: an environment, a planner, a Q network and a learned
value estimator registered by one file."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.warmup_steps=100", "train.eval_every=200", "train.eval_episodes=2",
        "train.batch_size=32", "planner.hidden=32", "value.hidden=32"]


def _mbiapo(*argv, cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "mbiapo.cli", *map(str, argv), "--json"],
                          cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    page = (ROOT / "docs" / "plugins.md").read_text()
    block = re.search(r"```python\n(.*?)```", page, re.S)[1]
    path = tmp_path_factory.mktemp("plugin") / "my_plugin.py"
    path.write_text(block)
    return path


def test_the_documented_plugin_runs_through_every_command(plugin, tmp_path):
    run = tmp_path / "run"
    flags = ["--plugin", plugin]
    _mbiapo("train", *flags, "--env", "ShortPendulum-v0", "--value", "learned-bonus",
            "--steps", "200", "--out", run, "value.q_network=separate", "value.bonus_lr=0.005",
            *TINY, cwd=tmp_path)
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "bonus_loss" in header
    done = _mbiapo("evaluate", *flags, "--checkpoint", run, "--planner", "shooting",
                   "--episodes", "2", "planner.population=32", cwd=tmp_path)
    assert done["planner"] == "shooting" and done["env"] == "ShortPendulum-v0"
    assert _mbiapo("plan", *flags, "--checkpoint", run, "--episodes", "1",
                   cwd=tmp_path)["episodes"] == 1
    _mbiapo("states", *flags, "--checkpoint", run, "--n", "6", "--out", tmp_path / "s.h5",
            cwd=tmp_path)
    compared = _mbiapo("compare", *flags, "--checkpoint", run, "--states", tmp_path / "s.h5",
                       "--planners", "direct,cem,shooting", "--iters", "3", "--out",
                       tmp_path / "cmp", cwd=tmp_path)
    assert set(compared["planners"]) == {"direct", "cem", "shooting"}
    gap = _mbiapo("gap", *flags, "--checkpoint", run, "--states", tmp_path / "s.h5",
                  "--planners", "direct,shooting", "--steps", "3", "--out", tmp_path / "gap",
                  cwd=tmp_path)
    assert gap["analysis"] == "gap"
    loaded = subprocess.run(
        [sys.executable, "-c", "from mbiapo import api\n"
         f"api.load_plugin({str(plugin)!r})\nagent = api.load({str(run)!r})\n"
         "print(agent.cfg.env.id, agent.cfg.value.kind, agent.cfg.value.q_network, "
         "sorted(agent.estimator.state_dict()))"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split()[:3] == ["ShortPendulum-v0", "learned-bonus", "separate"]
    assert "bonus.weight" in loaded.stdout
    missing = subprocess.run([sys.executable, "-m", "mbiapo.cli", "evaluate", "--checkpoint",
                              str(run)], capture_output=True, text=True, timeout=300,
                             cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"--plugin {plugin}" in missing.stderr.strip().splitlines()[-1]
