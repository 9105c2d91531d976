"""The README is a reading path that must not go stale: its Files table's line counts are the files'."""

import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_the_files_tables_line_counts_are_the_files_line_counts():
    readme = open(os.path.join(ROOT, "README.md")).read()
    rows = re.findall(r"^\| \[`([\w.]+\.py)`\]\([\w.]+\) \|.*\| (\d+) \|$", readme, flags=re.M)
    assert len(rows) >= 9
    for name, lines in rows:
        with open(os.path.join(ROOT, name)) as f:
            assert sum(1 for _ in f) == int(lines), f"README's Files table: {name} has {lines} lines"
