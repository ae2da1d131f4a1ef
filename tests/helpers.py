"""Shared test helpers: the tiny config, in-process CLI calls, registries put back."""

from contextlib import contextmanager

from mbiapo.cli import main
from mbiapo.config import compose, overrides_for

TINY = ["planner.hidden=32", "value.hidden=32", "train.batch_size=32", "train.warmup_steps=50",
        "train.eval_every=100", "train.eval_episodes=2", "env.max_episode_steps=50"]


def tiny_config(planner: str = "direct", env: str = "InvertedPendulum-v5", extra=()):
    """A small, fast config (conftest's ``tiny_cfg`` fixture is the same, function-scoped);
    TINY's planner settings apply to the planners that have them."""
    planner_keys = [item for item in TINY if item.startswith("planner.")]
    tiny = [item for item in TINY if item not in planner_keys]
    return compose(env, planner, overrides=[*tiny, *overrides_for(planner, planner_keys),
                                            *extra])


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``mbiapo ARGV`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(capsys, *argv) -> str:
    """Run ``mbiapo ARGV`` expecting bad input: exit code 2, nothing on stdout, and one
    ``mbiapo: error: ...`` line on stderr (no traceback), which is returned."""
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mbiapo: error: "), err
    return lines[0]


@contextmanager
def registries_restored():
    """Whatever the block registers (plugins, docs examples) is gone after it."""
    from mbiapo.planners import PLANNERS
    from mbiapo.value import Q_NETWORKS, VALUES

    saved = {r: dict(r._entries) for r in (PLANNERS, VALUES, Q_NETWORKS)}
    try:
        yield
    finally:
        for r, entries in saved.items():
            r._entries = entries


def count_environments(monkeypatch, module) -> dict:
    """Replace ``module.make_env`` with one that counts the environments alive; returns
    {"alive": set of live ids, "most": the largest number alive at once so far}."""
    seen = {"alive": set(), "most": 0}
    make = module.make_env

    def counted(*args, **kwargs):
        env = make(*args, **kwargs)
        seen["alive"].add(id(env))
        seen["most"] = max(seen["most"], len(seen["alive"]))
        close = env.close
        env.close = lambda: (seen["alive"].discard(id(env)), close())
        return env

    monkeypatch.setattr(module, "make_env", counted)
    return seen
