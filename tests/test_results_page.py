"""docs/results.md is generated from the run reports kept under results/ and stands on its own."""

import re
from pathlib import Path

from edgebnn.recipes import results

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m edgebnn.recipes results results/ --out docs/results.md"


def test_the_committed_page_is_what_the_committed_reports_generate(monkeypatch):
    monkeypatch.chdir(ROOT)  # the page names its run folders relative to the repository
    reports = results.find_reports(["results/"])
    assert reports, "no run reports under results/"
    page = results.render(reports, command=COMMAND, out_dir=(ROOT / "docs").resolve())
    assert page == (ROOT / "docs" / "results.md").read_text(encoding="utf-8")


def test_every_link_and_path_on_the_page_stays_inside_the_repository():
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for link in re.findall(r"\]\(([^)]+)\)", page):
        target = (ROOT / "docs" / link).resolve()
        assert target.is_relative_to(ROOT) and target.is_file(), link
    assert "/work/" not in page and "/tmp/" not in page and "/home/" not in page


def test_reports_a_rerun_set_aside_are_not_runs_of_their_own(tmp_path):
    from edgebnn.recipes.runner import INCOMPLETE, PREVIOUS  # noqa: PLC0415

    report = (ROOT / "results" / "guan" / "fig2" / "mnist" / "report.json").read_bytes()
    run = tmp_path / "guan" / "fig2" / "mnist"
    for folder in (run, run / PREVIOUS, run / INCOMPLETE, run / "store" / "x"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_bytes(report)
    assert [folder for folder, _ in results.find_reports([tmp_path])] == [run]
