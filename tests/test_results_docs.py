"""docs/results.md's generated tables are what ``mbiapo report RESULTS.csv --markdown``
makes from the per-seed CSVs committed under docs/results/<release>/, byte for byte, so no
number in them is typed by hand. ``MBIAPO_UPDATE_DOCS=1 pytest tests/test_results_docs.py``
rewrites them after a CSV changes."""

import os
import re
from pathlib import Path

from mbiapo.report import markdown, report

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results.md"
BLOCK = re.compile(r"<!-- report ([^>]+?) -->\n(.*?)<!-- end report -->", re.S)


def _generated(match: re.Match) -> str:
    tables = markdown(report(*(ROOT / name for name in match[1].split())))
    return f"<!-- report {match[1]} -->\n{tables}<!-- end report -->"


def test_the_results_page_tables_come_from_the_committed_csvs():
    page = PAGE.read_text()
    sources = [name for m in BLOCK.finditer(page) for name in m[1].split()]
    assert sources and all((ROOT / s).is_file() for s in sources), sources
    expected = BLOCK.sub(_generated, page)
    if os.environ.get("MBIAPO_UPDATE_DOCS"):
        PAGE.write_text(expected)
    assert page == expected, "stale: MBIAPO_UPDATE_DOCS=1 pytest tests/test_results_docs.py"
