"""No block of migration_jobs/ is written twice beyond the pairs docs/architecture.md names (section
"Repetition `duplicates` may report"), as the `duplicates` command reports them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^D\d+ (\S+?):\d+-\d+ ~ (\S+?):\d+-\d+(.*)$", re.M)
NAMED = re.compile(r"^- `(\S+)` ~ `(\S+)`:", re.M)


def named_pairs(page: str) -> list[tuple[str, str]]:
    """The page's `a` ~ `b` lines; a name ending in / stands for every file below that folder."""
    section = page.split("## Repetition `duplicates` may report", 1)[1].split("\n## ", 1)[0]
    return NAMED.findall(section)


def is_named(pair: tuple[str, str], named: list[tuple[str, str]]) -> bool:
    def covers(name: str, path: str) -> bool:
        return path.startswith(name) if name.endswith("/") else path == name

    first, second = pair
    return any((covers(a, first) and covers(b, second)) or (covers(a, second) and covers(b, first)) for a, b in named)


def reported_pairs(output: str) -> list[tuple[str, str]]:
    """The pairs of files `duplicates` reports, leaving out what it marks as boilerplate (thin)."""
    return [(first, second) for first, second, rest in ROW.findall(output) if "boilerplate" not in rest]


def test_every_repeated_block_in_migration_jobs_is_named_in_the_architecture_page():
    if shutil.which("duplicates") is None:
        pytest.skip("the `duplicates` command is not installed on this machine")
    result = subprocess.run(
        ["duplicates", "--repo", "migration_jobs", "--most", "200", "--seconds", "120"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "incomplete:" not in result.stdout, result.stdout
    named = named_pairs((ROOT / "docs" / "architecture.md").read_text())
    unnamed = [f"{a} ~ {b}" for a, b in reported_pairs(result.stdout) if not is_named((a, b), named)]
    assert unnamed == [], "fold these or name them (with why) in docs/architecture.md:\n" + result.stdout


def test_the_check_reads_the_tools_rows_and_the_pages_names():
    output = (
        "3 pairs of places (9 files read)\n"
        "D1 models/unified.py:1-9 ~ models/unified.py:20-29 shape (+3 more runs)\n"
        "D2 services/a.py:1-9 ~ services/b.py:5-13\n"
        "D3 admin/x.py:1-8 ~ admin/y.py:1-8 shape boilerplate\n"
    )
    page = (
        "## Repetition `duplicates` may report\n\n- `models/unified.py` ~ `models/unified.py`: why\n"
        "\n## The next section\n\n- `services/a.py` ~ `services/b.py`: not in the section\n"
    )
    named = named_pairs(page)
    assert named == [("models/unified.py", "models/unified.py")]
    pairs = reported_pairs(output)
    assert pairs == [("models/unified.py", "models/unified.py"), ("services/a.py", "services/b.py")]
    assert [is_named(pair, named) for pair in pairs] == [True, False]
    assert is_named(("migrations/0002_x.py", "migrations/0001_y.py"), [("migrations/", "migrations/")])
