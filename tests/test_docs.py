"""The documentation: the README stays a guide, every relative link resolves, and the README's
results table is the one its RESULTS.md holds (so it cannot drift from the run it names)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
RESULTS = re.compile(r"<!-- results: (\S+) -->\n(.*?)<!-- /results -->", re.S)


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # not inside code blocks
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link) and not link.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = [link for link in relative_links(page) if not (page.parent / link.split("#")[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_link_check_sees_links(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[a](docs/x.md) [b](https://x.org) [c](#top)\n```\n[d](not/a/link.md)\n```\n")
    assert relative_links(page) == ["docs/x.md"]


def test_the_readme_is_a_guide_of_at_most_250_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_the_readme_results_table_is_the_one_in_the_results_file_it_names():
    blocks = RESULTS.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) == 1
    path, table = blocks[0]
    assert table.strip().startswith("| Model") and table.strip() in (ROOT / path).read_text(encoding="utf-8")


COMMAND_ROW = re.compile(r"^\| [^|]+ \| \[`mlkd ([a-z-]+)[^`]*`\]\(([^)]+)\)", re.M)


def documented_commands(readme: str) -> dict[str, str]:
    """The README command table's commands → the docs page each links to."""
    return dict(COMMAND_ROW.findall(readme))


def test_every_command_has_a_row_linking_a_page_that_documents_it():
    from mlkd_cli.cli import COMMANDS

    rows = documented_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert sorted(rows) == sorted(COMMANDS)
    undocumented = [c for c, page in rows.items() if f"mlkd {c}" not in (ROOT / page).read_text(encoding="utf-8")]
    assert not undocumented, f"pages that never show the command they are linked for: {undocumented}"


def test_the_command_table_check_sees_rows():
    assert documented_commands("| data | [`mlkd prepare SRC...`](docs/prepare.md) — x |\n| x | `mlkd score` |\n") == {
        "prepare": "docs/prepare.md"}
