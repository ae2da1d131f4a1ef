"""The shipped checkpoint is package data: a wheel holds it, ``pretrained:NAME`` finds it,
and the model fitted for it is cached in the user's cache folder, not in the package."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import error_line

ROOT = Path(__file__).parents[1]
SHIPPED = ROOT / "mbiapo" / "pretrained"


def test_the_wheel_holds_every_module_the_shipped_runs_and_configs(tmp_path):
    """A non-editable install has the whole package: every module of mbiapo/, models/ and
    planners/ (a subpackage missing from setup.cfg would break only such installs)."""
    source = tmp_path / "source"  # the tracked files only: a stale build/ here would leak in
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)], check=True,
                   timeout=600, capture_output=True)
    (wheel,) = tmp_path.glob("mbiapo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [p for p in SHIPPED.rglob("*") if p.is_file() and ".mb-" not in p.name]
    assert {"checkpoint.pt", "replay.h5", "config.yaml", "metrics.csv"} <= {p.name for p
                                                                            in shipped}
    for path in shipped:
        assert f"mbiapo/{path.relative_to(ROOT / 'mbiapo')}" in names, path
    assert "mbiapo/configs/default.yaml" in names
    for folder, package in (("mbiapo", "mbiapo"), ("models", "mbiapo/models"),
                            ("planners", "mbiapo/planners")):
        for module in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{module.relative_to(ROOT / folder).as_posix()}" in names, module


def test_pretrained_names_a_shipped_checkpoint(tmp_path, monkeypatch, capsys):
    """What the README's first command does before planning: load it by name and fit a
    model on its replay, cached outside the package."""
    from mbiapo import transfer
    from mbiapo.checkpoint import load_agent

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = sorted(p.name for p in (SHIPPED / "ip-iterative").iterdir())
    agent, payload = load_agent("pretrained:ip-iterative")
    assert payload["path"] == str(SHIPPED / "ip-iterative" / "checkpoint.pt")
    _, info = transfer.fitted(agent, "pretrained:ip-iterative", None, fit_steps=5)
    assert info["value_source"] == f"fitted on {SHIPPED / 'ip-iterative' / 'replay.h5'}"
    assert len(list((tmp_path / "cache" / "mbiapo").glob("checkpoint.mb-*.pt"))) == 1
    assert sorted(p.name for p in (SHIPPED / "ip-iterative").iterdir()) == before
    capsys.readouterr()
    assert "shipped: ip-iterative" in error_line(capsys, "evaluate", "--checkpoint",
                                                 "pretrained:nope")
