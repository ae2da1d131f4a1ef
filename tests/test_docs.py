"""The docs cannot go stale: the ```python blocks of docs/python-api.md and docs/analyses.md
run, docs/commands.md lists every command's flags, docs/configuration.md every key."""

import re
from pathlib import Path

from tests.helpers import registries_restored

DOCS = Path(__file__).parents[1] / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_python_api_page_runs(monkeypatch, tmp_path, capsys):
    blocks = python_blocks(DOCS / "python-api.md")
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "python_api_page"}
    with registries_restored():
        for block in blocks:
            exec(compile(block, "docs/python-api.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "mppi return" in printed and "shooting return" in printed
    assert "(4, 1)" in printed
    assert namespace["last"]["step"] == 400


def test_the_analyses_page_runs(monkeypatch, tmp_path, capsys):
    """The Python example of docs/analyses.md (gap on the shipped checkpoint) runs and writes
    what it says."""
    blocks = python_blocks(DOCS / "analyses.md")
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "docs/analyses.md", "exec"), {"__name__": "analyses_page"})
    table = capsys.readouterr().out
    assert "iterative+5" in table and "adam" in table
    assert {p.name for p in (tmp_path / "gap-out").iterdir()} >= {"gap.csv", "summary.json",
                                                                   "gap.png"}


def _commands_reference() -> dict[tuple[str, ...], set[str]]:
    """(command words) -> the --flags docs/commands.md gives it."""
    found: dict[tuple[str, ...], set[str]] = {}
    for line in (DOCS / "commands.md").read_text().splitlines():
        m = re.match(r"\| `mbiapo ([^`]*)` \|", line)
        if not m:
            continue
        words = []
        for word in m[1].split():
            if not re.fullmatch(r"[a-z]+", word):
                break
            words.append(word)
        found.setdefault(tuple(words), set()).update(re.findall(r"--[a-z][a-z0-9-]*", m[1]))
    return found


def _flags(parser) -> set[str]:
    """The --flags of an argparse parser, without --help and the global --plugin and
    --threads."""
    return {flag for action in parser._actions for flag in action.option_strings
            if flag.startswith("--") and flag not in ("--help", "--plugin", "--threads")}


def _subcommands(parser) -> dict[tuple[str, ...], object]:
    """(command words) -> parser, for every command and subcommand of ``parser``."""
    import argparse

    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[(name,)] = sub
                found.update({(name, *words): p for words, p in _subcommands(sub).items()})
    return found


def test_the_commands_reference_and_the_cli_list_the_same_flags(capsys):
    """docs/commands.md and the CLI cannot drift: every command is documented, each
    documented flag is in the command's --help, and every flag in --help is documented."""
    import pytest

    from mbiapo.cli import build_parser

    reference = _commands_reference()
    commands = _subcommands(build_parser())
    documented = {words for words in reference}
    leaves = {words for words, p in commands.items() if not _subcommands(p)}
    assert leaves <= documented, leaves - documented
    for words, flags in reference.items():
        with pytest.raises(SystemExit):
            build_parser().parse_args([*words, "--help"])
        shown = capsys.readouterr().out
        missing = [flag for flag in flags if flag not in shown]
        assert not missing, (words, missing)
        undocumented = _flags(commands[words]) - flags
        assert not undocumented, (words, sorted(undocumented))


def test_the_configuration_page_lists_every_key():
    from mbiapo.config import compose
    from mbiapo.planners import PLANNERS

    page = (DOCS / "configuration.md").read_text()
    keys = set()
    from mbiapo.value import VALUES

    for planner in PLANNERS.names():
        for kind in VALUES.names():
            cfg = compose("InvertedPendulum-v5", planner, overrides=[f"value.kind={kind}"])
            keys |= {f"{group}.{key}" for group in cfg for key in cfg[group]}
    missing = sorted(k for k in keys if f"`{k}`" not in page)
    assert not missing, missing
