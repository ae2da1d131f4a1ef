"""docs/results.md's generated tables are what ``mbiapo report RESULTS.csv --markdown``
makes from the per-seed CSVs committed under docs/results/<release>/, byte for byte, so no
number in them is typed by hand. ``mbiapo report --page docs/results.md`` rewrites them
and redraws the figures after a CSV changes."""

from pathlib import Path

import pytest

from mbiapo.report import PAGE_BLOCK, markdown, render_page, report
from tests.helpers import error_line, run_cli
from tests.test_report import make_run

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results.md"


def test_the_results_page_tables_come_from_the_committed_csvs():
    page = PAGE.read_text()
    sources = [name for m in PAGE_BLOCK.finditer(page) for name in m[1].split()
               if name.endswith(".csv")]
    assert sources and all((ROOT / s).is_file() for s in sources), sources
    expected, blocks = render_page(page, ROOT)
    assert all(figure is not None and figure.is_file() for _, figure in blocks)
    assert page == expected, "stale: mbiapo report --page docs/results.md"


def test_report_page_rewrites_blocks_and_draws_their_figures(tmp_path, capsys, monkeypatch):
    make_run(tmp_path, "runs/a", "InvertedPendulum-v5", "direct", 0, {1000: 10, 2000: 30}, [9, 9])
    make_run(tmp_path, "runs/b", "InvertedPendulum-v5", "direct", 1, {1000: 20, 2000: 50}, [9, 9])
    page = tmp_path / "page.md"
    stale = ("# Results\n\nprose stays\n\n<!-- report runs --out fig.png -->\nold table\n"
             "<!-- end report -->\n\n<!-- report runs -->\n<!-- end report -->\ntail\n")
    page.write_text(stale)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "report", "--page", "page.md")
    table = markdown(report(tmp_path / "runs"))
    assert code == 0 and "2 generated blocks, rewritten; 2 figures drawn" in out
    assert page.read_text() == stale.replace("old table\n", table).replace(
        "<!-- report runs -->\n", f"<!-- report runs -->\n{table}")
    assert "| direct | 2 |" in table
    for figure in ("fig.png", "fig-profile.png"):
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run_cli(capsys, "report", "--page", "page.md")
    assert code == 0 and "unchanged" in out


@pytest.mark.parametrize("text, args, message", [
    ("no blocks\n", [], "no generated blocks"),
    ("<!-- report --out f.png -->\n<!-- end report -->\n", [], "names no results to read"),
    ("<!-- report runs --out -->\n<!-- end report -->\n", [], "names no figure after --out"),
    ("<!-- report runs --out f.txt -->\n<!-- end report -->\n", [], "give a .png/.pdf/.svg"),
    ("<!-- report gone.csv -->\n<!-- end report -->\n", [], "gone.csv: no such folder"),
    ("<!-- report runs -->\n<!-- end report -->\n", ["runs"], "give no DIR, --out or"),
])
def test_report_page_bad_input_is_one_line_and_keeps_the_page(tmp_path, capsys, monkeypatch,
                                                              text, args, message):
    make_run(tmp_path, "runs/a", "InvertedPendulum-v5", "direct", 0, {1000: 10}, [9])
    page = tmp_path / "page.md"
    page.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert message in error_line(capsys, "report", "--page", "page.md", *args)
    assert page.read_text() == text and not list(tmp_path.glob("f*"))


def test_report_needs_sources_or_a_page(capsys):
    assert "or --page PAGE" in error_line(capsys, "report")
    assert "cannot read" in error_line(capsys, "report", "--page", "/nonexistent.md")
