"""Issue 34 (attachments): a malformed scorecard.json, units.json or feature-visualization PNG chunk is refused
by its schema; its section is left out with a note in the report and the app, and every other page works."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from mikata.runs.attachments import (
    SCORECARD_SCHEMA, attachment_notes, featurevis_gallery, load_scorecard, read_scorecard)
from mikata.runs.schema import MapOf, Opt, Req, SchemaError, check_value, json_depth, parse_json, read_json

TOKEN = "a" * 32
DEEP = "[" * 10000 + "]" * 10000
GOOD_CARD = {"model": "m", "images": 4, "target": "top1", "methods": ["gradcam"],
             "metrics": [{"name": "insertion-auc", "better": "higher", "description": "d"}],
             "table": {"gradcam": {"insertion-auc": 0.5}}, "passes": {"gradcam": {"randomization": True}},
             "figures": [], "created": "2026-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from hostile_support import small_run

    return small_run(tmp_path_factory.mktemp("att"), n=20)


def _card(run: Path, text: str) -> None:
    (run / "evaluate").mkdir(exist_ok=True)
    (run / "evaluate" / "scorecard.json").write_text(text)


def _units(run: Path, text: str) -> None:
    (run / "units").mkdir(exist_ok=True)
    (run / "units" / "units.json").write_text(text)


def _featurevis(run: Path, chunks: dict[str, str], unit_chunks: dict[str, str] | None = None) -> None:
    folder = run / "featurevis" / "classes"
    folder.mkdir(parents=True, exist_ok=True)
    for name, info in (("grid.png", chunks), ("u0.png", unit_chunks or {})):
        meta = PngImagePlugin.PngInfo()
        for k, v in info.items():
            meta.add_itxt(k, v, zip=True)
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(folder / name, pnginfo=meta)


def _scorecard_with(**changes) -> str:
    return json.dumps({**GOOD_CARD, **changes})


# case -> (damage, the start of the note after the file name)
CASES = {
    "scorecard nested 10,000 deep": (lambda r: _card(r, '{"table": ' + DEEP + "}"),
                                     "evaluate/scorecard.json: nested 10001 levels deep"),
    "scorecard objects nested 10,000 deep": (lambda r: _card(r, '{"a":' * 10000 + "1" + "}" * 10000),
                                             "evaluate/scorecard.json: nested 10000 levels deep"),
    "scorecard a list": (lambda r: _card(r, "[1, 2]"), "evaluate/scorecard.json: the top level: expected an object"),
    "scorecard not JSON": (lambda r: _card(r, "{oops"), "evaluate/scorecard.json: not valid JSON"),
    "scorecard not UTF-8": (lambda r: _card(r, "") or (r / "evaluate" / "scorecard.json").write_bytes(b"\xff\xfe{}"),
                            "evaluate/scorecard.json: not UTF-8 text"),
    "scorecard with NaN": (lambda r: _card(r, _scorecard_with().replace("0.5", "NaN")),
                           "evaluate/scorecard.json: not valid JSON (NaN is not a JSON value"),
    "scorecard methods a number": (lambda r: _card(r, _scorecard_with(methods=5)),
                                   "evaluate/scorecard.json: methods: expected a list, found an integer"),
    "scorecard table a list": (lambda r: _card(r, _scorecard_with(table=[1, 2])),
                               "evaluate/scorecard.json: table: expected an object, found a list"),
    "scorecard cell a list": (lambda r: _card(r, _scorecard_with(table={"gradcam": {"insertion-auc": [1]}})),
                              "evaluate/scorecard.json: table.gradcam.insertion-auc: expected a number, found a list"),
    "scorecard cell a string": (lambda r: _card(r, _scorecard_with(table={"gradcam": {"insertion-auc": "0.5"}})),
                                "evaluate/scorecard.json: table.gradcam.insertion-auc: expected a number, found a string"),
    "scorecard metric name a number": (lambda r: _card(r, _scorecard_with(metrics=[{"name": 5}])),
                                       "evaluate/scorecard.json: metrics[0].name: expected a string, found an integer"),
    "scorecard metric without a name": (lambda r: _card(r, _scorecard_with(metrics=[{"better": "higher"}])),
                                        "evaluate/scorecard.json: metrics[0]: the field 'name' is missing"),
    "scorecard passes a string": (lambda r: _card(r, _scorecard_with(passes={"gradcam": "yes"})),
                                  "evaluate/scorecard.json: passes.gradcam: expected an object, found a string"),
    "scorecard pass a number": (lambda r: _card(r, _scorecard_with(passes={"gradcam": {"randomization": 1}})),
                                "evaluate/scorecard.json: passes.gradcam.randomization: expected true or false"),
    "scorecard figures objects": (lambda r: _card(r, _scorecard_with(figures=[{"a": 1}])),
                                  "evaluate/scorecard.json: figures[0]: expected a string, found an object"),
    "scorecard images a string": (lambda r: _card(r, _scorecard_with(images="many")),
                                  "evaluate/scorecard.json: images: expected an integer, found a string"),
    "scorecard model a list": (lambda r: _card(r, _scorecard_with(model=["x"])),
                               "evaluate/scorecard.json: model: expected a string, found a list"),
    "scorecard too big": (lambda r: _card(r, '{"x": "' + "a" * (21 << 20) + '"}'),
                          "evaluate/scorecard.json: 22,020,105 bytes, larger than the 20,971,520"),
    "units nested 10,000 deep": (lambda r: _units(r, '{"units": ' + DEEP + "}"),
                                 "units/units.json: nested 10001 levels deep"),
    "units without layer": (lambda r: _units(r, '{"units": []}'),
                            "units/units.json: the top level: the field 'layer' is missing"),
    "units a dict of units": (lambda r: _units(r, '{"layer": "x", "units": {"a": 1}}'),
                              "units/units.json: units: expected a list, found an object"),
    "units channel a string": (lambda r: _units(r, '{"layer": "x", "units": [{"channel": "3", "top": []}]}'),
                               "units/units.json: units[0].channel: expected an integer, found a string"),
    "units activation inf": (lambda r: _units(r, '{"layer": "x", "units": [{"channel": 3, "top": [{"id": 1, '
                                                 '"activation": 1e999, "label": "a", "pred": "b"}]}]}'),
                             "units/units.json: units[0].top[0].activation: expected a number, found inf"),
    "featurevis rendering nested 10,000 deep": (lambda r: _featurevis(r, {"mikata-rendering": '{"units": ' + DEEP + "}"}),
                                                "featurevis/classes/grid.png (mikata-rendering): nested 10001 levels"),
    "featurevis rendering label an object": (
        lambda r: _featurevis(r, {"mikata-rendering": '{"units": [{"file": "u0.png", "label": {"x": 1}}]}'}),
        "featurevis/classes/grid.png (mikata-rendering): units[0].label: expected a string, found an object"),
    "featurevis rendering not JSON": (lambda r: _featurevis(r, {"mikata-rendering": "<script>alert(1)</script>"}),
                                      "featurevis/classes/grid.png (mikata-rendering): not valid JSON"),
}


def _copy(run: Path, tmp_path: Path, damage) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    damage(copy)
    return copy


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_refused_attachment_gives_one_note(run, tmp_path, case):
    damage, note = CASES[case]
    copy = _copy(run, tmp_path, damage)
    notes = attachment_notes(copy)
    assert len(notes) == 1 and notes[0].startswith(note), notes
    assert "\n" not in notes[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_app_leaves_the_section_out_with_the_note_and_every_page_works(run, tmp_path, case):
    from fastapi.testclient import TestClient

    from mikata.server import create_app

    damage, note = CASES[case]
    copy = _copy(run, tmp_path, damage)
    c = TestClient(create_app(copy, token=TOKEN, port=8765), base_url="http://127.0.0.1:8765",
                   raise_server_exceptions=False)
    assert c.get(f"/?token={TOKEN}").status_code == 200
    for page in ("/", "/grid", "/image/1", "/featurevis", "/scorecard", "/units", "/reviews", "/embedding",
                 "/api/overview", "/thumb/1"):
        r = c.get(page, headers={"sec-fetch-site": "same-origin"})
        assert r.status_code == 200, (page, r.status_code, r.text[:200])
    home = c.get("/").text
    assert 'class="warn attachment-note"' in home and note.split(":")[0] in home
    if case.startswith("scorecard"):
        assert read_scorecard(copy) is None and 'href="/scorecard"' not in home  # the tab is gone
    if case.startswith("featurevis"):
        gallery = c.get("/featurevis").text
        assert "<figcaption>u0</figcaption>" in gallery  # the unit shown under its file name


@pytest.mark.parametrize("case", sorted(c for c in CASES if not c.endswith("too big")))
def test_the_report_leaves_the_section_out_with_the_note(run, tmp_path, case):
    from mikata.report import write_report

    damage, note = CASES[case]
    copy = _copy(run, tmp_path, damage)
    write_report(copy, tmp_path / "r.html", maps=False)
    html = (tmp_path / "r.html").read_text()
    import html as htmlmod

    assert note in htmlmod.unescape(html)
    if case.startswith("scorecard"):
        assert 'id="scorecard"' not in html


def test_a_good_scorecard_passes_its_schema_and_shows(run, tmp_path):
    copy = _copy(run, tmp_path, lambda r: _card(r, json.dumps(GOOD_CARD)))
    card, note = load_scorecard(copy)
    assert card == GOOD_CARD and note is None and attachment_notes(copy) == []


def test_a_scorecard_written_by_evaluate_passes_its_schema(tmp_path):
    """The schema accepts what ``write_scorecard`` writes (a real evaluation of a tiny model)."""
    import torch

    from hostile_support import tiny_cnn
    from mikata.evaluation.scorecard import evaluate, write_scorecard

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 28, 28, generator=g)
    result = evaluate(tiny_cnn(), x, ["gradcam", "saliency"], checks=["faithfulness", "randomization"], steps=4,
                      stages=2)
    path = write_scorecard(result, str(tmp_path), figure=False)
    assert check_value(json.loads(Path(path).read_text()), SCORECARD_SCHEMA, "scorecard.json")


def test_hostile_png_labels_are_cleaned_and_cut(run, tmp_path):
    label = "\x1b[31mred\x1b[0m <b>" + "x" * 500
    copy = _copy(run, tmp_path, lambda r: _featurevis(
        r, {"mikata-rendering": json.dumps({"units": [{"file": "u0.png", "label": label}]}),
            "mikata-log": "\x1b]0;title\x07 log"}))
    (entry,) = featurevis_gallery(copy)
    (_, shown), = entry["units"]
    # cut to 200 characters, then the two escape characters dropped
    assert "\x1b" not in shown and len(shown) == 198 and shown.startswith("[31mred[0m <b>x")
    assert entry["note"] is None


# ------------------------------------------------------------------------------------- the validator
def test_json_depth_against_the_parser():
    for text in ("1", "[]", "[[1], {}]", '{"a": {"b": [1, {"c": 2}]}}', '["[[[[", "]]"]', '{"a\\"[": 1}'):
        value = json.loads(text)

        def depth(v) -> int:
            if isinstance(v, list):
                return 1 + max((depth(x) for x in v), default=0)
            if isinstance(v, dict):
                return 1 + max((depth(x) for x in v.values()), default=0)
            return 0

        assert json_depth(text) == depth(value), text


@pytest.mark.parametrize("value, schema, error", [
    (1, "str", "x.json: the top level: expected a string, found an integer"),
    (True, "int", "x.json: the top level: expected an integer, found true or false"),
    (float("inf"), "number", "x.json: the top level: expected a number, found inf"),
    ({"a": 1}, {"a": Req("str")}, "x.json: a: expected a string, found an integer"),
    ({}, {"a": Req("str")}, "x.json: the top level: the field 'a' is missing"),
    ({"a": {"b": [1, "2"]}}, MapOf(MapOf(["int"])), "x.json: a.b[1]: expected an integer, found a string"),
    ([None], [Opt({"a": "int"})], None),
    ({"a": None}, {"a": Opt("int")}, None),
    ({"extra": [1]}, {"a": "int"}, None),
])
def test_check_value(value, schema, error):
    if error is None:
        assert check_value(value, schema, "x.json") is value
    else:
        with pytest.raises(SchemaError) as e:
            check_value(value, schema, "x.json")
        assert str(e.value) == error


def test_parse_json_refuses_deep_text_without_recursing():
    with pytest.raises(SchemaError, match="nested 100000 levels deep"):
        parse_json("[" * 100000 + "]" * 100000, "x.json")
    assert parse_json("[" * 20 + "]" * 20, "x.json") is not None


def test_read_json_refuses_what_is_not_a_file(tmp_path):
    (tmp_path / "d.json").mkdir()
    with pytest.raises(SchemaError, match="d.json: cannot be read"):
        read_json(tmp_path / "d.json", "any")
