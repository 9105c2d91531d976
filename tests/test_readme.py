"""The README is a reading path that must not go stale: its line counts, tables and reports are the code's."""

import glob
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


def test_each_committed_report_is_what_experiment_py_makes_of_its_csv(tmp_path):
    """Every results/**/experiment.md is report()'s output from the CSV beside it, so no table in it was
    typed; its figure links (drawn again here to tmp_path, not compared) name files that exist."""
    import experiment as ex

    figure = re.compile(r"^!\[.*\]\((.*)\)$", re.M)
    paths = glob.glob(os.path.join(ROOT, "results", "**", "experiment.csv"), recursive=True)
    assert paths
    for path in paths:
        md = open(os.path.join(os.path.dirname(path), "experiment.md")).read()
        ex.report(ex.Config(results=str(tmp_path), figures=str(tmp_path)), ex.read_csv(path))
        assert figure.sub("", open(tmp_path / "experiment.md").read()) == figure.sub("", md), path
        assert all(os.path.exists(os.path.join(os.path.dirname(path), f)) for f in figure.findall(md))
