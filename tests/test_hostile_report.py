"""Issue 17, class 7: the report's embedded JSON stays valid JSON, and stays inside its script element,
whatever the class names say."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser

import pytest

from mikata.report.build import _json_script

HOSTILE = ["<!--", "<script>alert(1)<", "a&b", "line\u2028sep\u2029", "]]>", "x\"y'z\\", "<!--<script>", "-->",
           "&lt;not&gt;", "</scri"]
STRINGS = HOSTILE + ["</script>", "</SCRIPT >", "<\\/script>", "\\u003c", "<!-- </script> -->", "\\", "\x00\x1f",
                     "𝒳 é 日本", "<![CDATA[", "\ufeff"]


@pytest.mark.parametrize("text", STRINGS)
def test_json_for_a_script_element_round_trips_and_holds_no_markup(text):
    data = {"classes": [text, text * 3], text: {"nested": [text]}}
    out = _json_script(data)
    assert json.loads(out) == data
    assert not set(out) & {"<", ">", "&", "\u2028", "\u2029"}


class _Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.blocks: dict[str, str] = {}
        self._id: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._id = a.get("id") if tag == "script" and a.get("type") == "application/json" else None

    def handle_data(self, data):
        if self._id:
            self.blocks[self._id] = self.blocks.get(self._id, "") + data

    def handle_endtag(self, tag):
        self._id = None


def test_a_report_of_classes_with_hostile_names_keeps_its_data_intact(tmp_path):
    from test_scan_support import digit_images, mnist_handle, write_folder

    from mikata.scanning.scan import scan
    from mikata.report import write_report

    images, labels = digit_images(40)
    write_folder(tmp_path / "digits", images, labels)
    for i, name in enumerate(HOSTILE):  # folders named after the hostile classes
        (tmp_path / "digits" / str(i)).rename(tmp_path / "digits" / name.replace("/", "_"))
    names = [n.replace("/", "_") for n in HOSTILE]
    handle = dataclasses.replace(mnist_handle(), class_names=names)
    scan(handle, tmp_path / "digits", tmp_path / "run", batch_size=16, workers=0, progress=False)
    out = tmp_path / "report.html"
    write_report(tmp_path / "run", out, maps=False)
    html = out.read_text(encoding="utf-8")
    raw = re.search(r'<script type="application/json" id="mk-data">(.*?)</script>', html, re.S).group(1)
    assert "<" not in raw and json.loads(raw)  # the element ends where it should, and its text is JSON
    p = _Scripts()
    p.feed(html)
    data = json.loads(p.blocks["mk-data"])
    assert set(names) <= _strings(data)
    json.loads(p.blocks["mk-thumbs"])


def _strings(obj) -> set[str]:
    if isinstance(obj, str):
        return {obj}
    if isinstance(obj, dict):
        return set().union(*(_strings(v) | {k} for k, v in obj.items())) if obj else set()
    if isinstance(obj, list):
        return set().union(*(_strings(v) for v in obj)) if obj else set()
    return set()
