"""``write_report`` as stages over a ``ReportOptions``: the keyword form and the options form write the
same page, the stages compose by hand, bad options fail before any work."""

import re

import pytest
from review_support import cells_run

from mikata.report import ReportError, ReportOptions, write_report
from mikata.report.build import _Clock, _output, gather, render_report, report_maps, report_sections

STAGES = ["overview", "maps", "confusion", "embedding", "thumbnails", "extras", "concepts", "fields",
          "dataset issues", "render", "write", "total"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return cells_run(tmp_path_factory.mktemp("stages"))["run"]


def _page(html: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "", html)  # the creation time


def test_options_and_keywords_write_the_same_page_with_a_time_per_stage(run, tmp_path):
    a = write_report(run, tmp_path / "a.html", maps=False, n=2, thumb=32)
    b = write_report(run, tmp_path / "b.html", ReportOptions(maps=False, n=2, thumb=32))
    assert _page(a.path.read_text()) == _page(b.path.read_text())
    assert list(a.timings) == STAGES and a.images == b.images and a.thumbnails == b.thumbnails
    c = write_report(run, tmp_path / "c.html", ReportOptions(maps=False, n=2, thumb=64), thumb=32)  # keyword wins
    assert _page(c.path.read_text()) == _page(a.path.read_text())


def test_the_stages_compose_by_hand(run, tmp_path):
    from mikata.models.source import ModelSource

    written = write_report(run, tmp_path / "w.html", maps=False).path.read_text()
    opts = ReportOptions(maps=False).checked()
    clock = _Clock()
    layout, _ = _output(run, tmp_path / "unused.html")
    g = gather(run, layout, opts, clock)
    maps = report_maps(g, opts, ModelSource(), clock)
    assert maps.overlays == {} and maps.with_maps == set()
    html = render_report(report_sections(g, maps, opts, ModelSource(), clock))
    assert _page(html) == _page(written)
    assert list(clock.timings) == STAGES[:9]


def test_bad_options_fail_before_any_work(run, tmp_path):
    with pytest.raises(TypeError, match="no_such_option"):
        write_report(run, tmp_path / "x.html", no_such_option=1)
    with pytest.raises(ReportError, match="thumbnail size 8 px"):
        write_report(run, tmp_path / "x.html", ReportOptions(thumb=8))
    with pytest.raises(ReportError, match="not a probability"):
        write_report(run, tmp_path / "x.html", threshold=1.5)
    assert not (tmp_path / "x.html").exists()
