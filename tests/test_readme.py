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


def tables(text, row):
    """The markdown tables of `text` (runs of lines starting with "|") as lists of `row`'s matches."""
    blocks = [re.findall(row, b, re.M) for b in re.split(r"\n(?!\|)", text)]
    return [b for b in blocks if b]


def test_the_demonstrations_tables_are_the_reports():
    """Each arm row of the README's results tables (the main budget's, then the long one's) has the lr,
    avg@8, pass@1, pass@8 and step that experiment.py's report (results/experiment.md, generated from
    the CSV) gives that arm in the same budget's table."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    report = open(os.path.join(ROOT, "results", "experiment.md")).read()
    ours = tables(
        readme, r"^\| `([\w@]+)`[^|]* \| ([\d.e-]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|\s*(\w*)\s*\|$"
    )
    theirs = tables(report, r"^\| ([\w@]+) \| ([\d.e-]+) \| \d+ \|" + r" ([^|]+) \|" * 3 + r" ?([^|]*)\|")
    assert len(ours[0]) >= 7 and len(ours) <= len(theirs)
    for mine, report_rows in zip(ours, theirs):
        by_arm = {r[0]: r[1:] for r in report_rows}
        for arm, lr, *cells, step in mine:
            lr_report, avg, pass1, pass8, step_report = by_arm[arm]
            assert float(lr) == float(lr_report), arm
            assert [c.strip() for c in cells] == [avg.strip(), pass1.strip(), pass8.strip()], arm
            assert step == (step_report.strip() or ("" if arm.endswith("@self") else "never")), arm
