"""Concepts of one split, and a report of a split that says which images its concepts come from."""

from __future__ import annotations

import json
import re

import pytest
from concepts_support import mix_handle, mix_run

from mikata.errors import ChoiceError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("split")
    mix_run(base, per_class=8)
    scan(mix_handle(), base / "data", base / "heldout", batch_size=32, workers=0, progress=False, split_label="test")
    return base / "heldout"


def _scope(html: str) -> str:
    return re.search(r'id="concept-scope">(.*?)</p>', html, re.DOTALL).group(1)


def test_report_of_a_split_says_when_the_concepts_are_the_whole_runs(run, tmp_path, capsys):
    from mikata.cli import main
    from mikata.concepts import compute_atlas, load_atlas
    from mikata.report import write_report

    handle = mix_handle()
    compute_atlas(run, model=handle, per_class=2, sample=20, progress=False)
    assert load_atlas(run).split is None
    r = write_report(run, tmp_path / "whole.html", handle=handle, split="test", maps=False)
    scope = _scope((tmp_path / "whole.html").read_text(encoding="utf-8"))
    assert "every image of the run (all splits), not on split &#39;test&#39; alone" in scope
    assert "mikata concepts RUN --split test" in scope
    assert any("not on split 'test' alone" in n for n in r.notes)
    # computed for that split: the report says so, no warning
    assert main(["concepts", str(run), "--model", "concepts_support:mix_handle", "--device", "cpu",
                 "--per-class", "2", "--sample", "20", "--split", "test", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["split"] == "test" and sum(s["size"] for s in doc["strategies"]["warm"]) == 8
    r = write_report(run, tmp_path / "test.html", handle=handle, split="test", maps=False)
    assert _scope((tmp_path / "test.html").read_text(encoding="utf-8")) == \
        "Concepts computed on the images of split &#39;test&#39;."
    assert not any("alone" in n for n in r.notes)
    # the whole-run report of a split atlas says so too
    write_report(run, tmp_path / "all.html", handle=handle, maps=False)
    assert _scope((tmp_path / "all.html").read_text(encoding="utf-8")) == \
        "Concepts computed on the images of split &#39;test&#39;."


def test_an_unknown_split_is_refused_before_any_work(run, capsys):
    from mikata.cli import main
    from mikata.concepts import compute_atlas

    with pytest.raises(ChoiceError, match="train"):
        compute_atlas(run, model=mix_handle(), per_class=2, split="train", progress=False)
    assert main(["concepts", str(run), "--model", "concepts_support:mix_handle", "--split", "val"]) == 2
    assert "val" in capsys.readouterr().err
