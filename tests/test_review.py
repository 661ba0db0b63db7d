"""The label-error view and per-image fields (issue 22, items 4 and 7), on a real scan of a CSV manifest.

One run (``review_support.cells_run``: 300 real digits, a quarter inverted, 20 labels flipped, the
manifest columns ``cell_type`` and ``site``) is read by the audit, the report and the web app, and
they must agree: the same count of suspected label errors and the same order, a total beside every
cut list, evidence in words instead of "suggest X (1.000)", a "label fine" verdict that is never
exported with a suggested class, and the manifest's extra columns grouped, filtered and escaped.
"""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mikata.analysis.audit import label_issue_ranking
from mikata.runs.data import load_run
from mikata.analysis.fields import field_values, group_by
from mikata.analysis.audit_summary import audit, format_audit
from mikata.analysis.overview import overview
from mikata.runs.store import RunStore
from mikata.data.datasets import DatasetError, manifest_dataset
from review_support import HOSTILE, cells_run

TOKEN = "review-test-token"
BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    return cells_run(tmp_path_factory.mktemp("review"))


@pytest.fixture(scope="module")
def client(cells):
    from mikata.server import create_app

    app = create_app(cells["run"], token=TOKEN, port=8765, handle=cells["handle"])
    c = TestClient(app, base_url=BASE)
    assert c.get(f"/?token={TOKEN}").status_code == 200
    return c


def _ids_by_path(run) -> dict[str, int]:
    with RunStore.open(run) as store:
        return {p: i for i, p in store.rows(status="ok", columns=("id", "path"), tuples=True)}


# ------------------------------------------------------------------------------ manifest fields
def test_a_manifest_header_makes_its_extra_columns_fields(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")  # two files: one file listed twice with two labels is refused
    m = tmp_path / "m.csv"
    m.write_text("path,label,cell_type,site\na.png,x,inverted,north\nb.png,y,plain\n")
    ds = manifest_dataset(m)
    assert ds.fields == ["cell_type", "site"]
    assert [dict(s.fields) for s in ds.samples] == [{"cell_type": "inverted", "site": "north"},
                                                   {"cell_type": "plain", "site": ""}]
    assert ds.subset(ds.samples[:1]).fields == ["cell_type", "site"]
    m.write_text("a.png,x,whatever\n")  # no header: no names, so no fields (the old behaviour)
    assert manifest_dataset(m).fields == [] and manifest_dataset(m).samples[0].fields == ()
    for header in ("path,label,,site", "path,label,site,Site", "path,label,label"):
        m.write_text(f"{header}\na.png,x,1,2\n")
        with pytest.raises(DatasetError, match="column"):
            manifest_dataset(m)


def test_the_scan_stores_every_field_value(cells):
    with RunStore.open(cells["run"]) as store:
        assert store.field_names() == ["cell_type", "site"]
    d = load_run(cells["run"])
    kind = field_values(d, "cell_type")
    assert {str(p) for p, k in zip(d.paths, kind) if k == "inverted"} == cells["inverted"]
    assert set(field_values(d, "site")) == {"north", "south", HOSTILE}


def test_group_by_gives_accuracy_errors_and_recall_per_value_worst_first(cells):
    d = load_run(cells["run"])
    groups = group_by(d, "cell_type")
    assert [g["value"] for g in groups] == ["inverted", "plain"]  # the inverted digits are the weak subtype
    kind = field_values(d, "cell_type")
    for g in groups:
        rows = kind == g["value"]
        assert g["images"] == rows.sum() and g["errors"] == (d.labels[rows] != d.preds[rows]).sum()
        assert g["accuracy"] == pytest.approx((d.labels[rows] == d.preds[rows]).mean())
        for c in g["per_class"]:
            mine = rows & (d.labels == d.class_names.index(c["class"]))
            assert c["images"] == mine.sum() and c["recall"] == pytest.approx((d.preds[mine] == d.labels[mine]).mean())
    assert groups[0]["accuracy"] < groups[1]["accuracy"]


def test_audit_group_by_on_the_command_line(cells, capsys):
    from mikata.cli import main

    assert main(["audit", str(cells["run"]), "--group-by", "cell_type,site", "--json", "--no-dataset-issues"]) == 0
    r = json.loads(capsys.readouterr().out)
    d = load_run(cells["run"])
    assert r["groups"]["cell_type"] == group_by(d, "cell_type") and r["groups"]["site"] == group_by(d, "site")
    assert main(["audit", str(cells["run"]), "--group-by", "cell_type"]) == 0
    text = capsys.readouterr().out
    block = text[text.index("by cell_type"):]
    assert block.index("inverted") < block.index("plain")  # worst first
    assert re.search(r"inverted\s+75 images\s+\d+ errors\s+accuracy", block)
    assert "weak group inverted" in text  # the first --group-by column is the weak-group issue's grouping
    assert main(["audit", str(cells["run"]), "--group-by", "cell_typo"]) == 2
    err = capsys.readouterr().err
    assert "cell_typo" in err and "cell_type" in err and "site" in err


# ------------------------------------------------------------------------ one count everywhere
def test_audit_report_and_app_show_the_same_count_and_order(cells, client, tmp_path, capsys):
    from mikata.cli import main
    from mikata.report.build import write_report

    d = load_run(cells["run"])
    ranking = label_issue_ranking(d)
    total = len(ranking)
    assert total > 50  # so the audit (20) and the report (50) cut the list
    # the audit: the total, and "showing 20 of N"
    assert main(["audit", str(cells["run"]), "--json", "--no-dataset-issues"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert a["label_issues_total"] == total and len(a["label_issues"]) == 20
    assert [i["row"] for i in a["label_issues"]] == ranking[:20].tolist()
    assert main(["audit", str(cells["run"]), "--no-dataset-issues"]) == 0
    text = capsys.readouterr().out
    assert f"suspected label errors: {total} in all splits (showing 20 of {total}" in text
    full = audit(cells["run"], top_issues=20)
    assert full["dataset_issues"]["types"][0]["flagged"] == total  # the issue-type table counts the same list
    # the report: the total in the summary tile, "showing 50 of N" where it lists 50
    html = (write_report(cells["run"], tmp_path / "r.html", maps=False)).path.read_text()
    assert re.search(r'id="issue-count" data-value="(\d+)"', html).group(1) == str(total)
    assert f"showing 50 of {total}" in html
    listed = [int(x) for x in re.findall(r'<tr class="issue" data-id="(\d+)"', html)]
    assert listed == d.ids[ranking[:50]].tolist()
    assert re.search(r'<tr data-type="label">.*?<td class="num">(\d+)</td>', html).group(1) == str(total)
    # the app: the review queue's total and order, and the issues page's label count
    page = client.get("/reviews").text
    assert re.search(r'id="review-total">(\d+)<', page).group(1) == str(total)
    queue = [int(x) for x in re.findall(r'class="review review-card[^"]*" data-id="(\d+)"', page)]
    assert queue == d.ids[ranking[:100]].tolist()
    assert f"showing 1–{min(100, total)} of {total}" in page or total <= 100
    assert re.search(r'id="dash-issues">(\d+)<', client.get("/").text).group(1) == str(total)
    issues = client.get("/issues?type=label").text
    assert re.search(r'id="issue-total">(\d+)<', issues).group(1) == str(total)
    tiles = [int(x) for x in re.findall(r'class="review issue-item" data-id="(\d+)"', issues)]
    assert tiles == d.ids[ranking[:len(tiles)]].tolist()
    assert client.get("/api/overview").status_code == 200


def test_the_review_queue_pages_through_every_suspected_error(cells, client):
    d = load_run(cells["run"])
    ranking = label_issue_ranking(d)
    seen = []
    start = 0
    while start < len(ranking):
        page = client.get(f"/reviews?start={start}").text
        got = [int(x) for x in re.findall(r'class="review review-card[^"]*" data-id="(\d+)"', page)]
        assert got, start
        seen += got
        start += len(got)
    assert seen == d.ids[ranking].tolist()


# ------------------------------------------------------------------------------ the wording
def test_each_suspected_error_states_the_evidence_not_a_verdict(cells, client):
    ov = overview(cells["run"])
    d = ov.data
    item = ov.label_issues[0]
    r = item["row"]
    assert item["label"] == d.class_names[d.labels[r]] and item["label_prob"] == pytest.approx(d.probs[r, d.labels[r]])
    assert item["model_class"] == d.class_names[d.preds[r]] and item["model_prob"] == pytest.approx(d.probs[r].max())
    assert item["split"] == d.splits[r] and item["split"] in ("train", "val", "test")
    assert 0 <= item["score"] <= item["label_prob"] + 1e-6 or item["score"] <= 1
    text = format_audit(audit(cells["run"], dataset_issues=False))
    lines = text[text.index("suspected label errors"):].splitlines()[1:21]
    assert all(" labelled " in ln and " · model says " in ln and " · issue score " in ln and " · split " in ln
               for ln in lines)
    assert "suggest" not in text
    first = (f"labelled {item['label']} (p={item['label_prob']:.2f}) · model says {item['model_class']} "
             f"(p={item['model_prob']:.2f}) · issue score {item['score']:.2f} · split {item['split']}")
    assert first in lines[0]
    page = client.get("/reviews").text
    assert f"labelled <b>{item['label']}</b> (p={item['label_prob']:.2f}) · model says <b>{item['model_class']}</b>" in page
    assert 'src="/thumb/' + str(item["id"]) + '?size=160"' in page  # big enough to judge
    name = str(item["path"]).rsplit("/", 1)[-1]
    assert name in page
    issues = client.get("/issues?type=label").text
    assert "?size=160" in issues and name in issues and "model says" in issues


def test_audit_report_reviews_and_issues_phrase_the_evidence_with_one_function(cells, client, tmp_path):
    from mikata.analysis.audit import describe_label_issue, label_issue_evidence
    from mikata.report import write_report

    ov = overview(cells["run"])
    item = ov.label_issues[0]
    parts = label_issue_evidence(item)
    assert [p["key"] for p in parts] == ["labelled", "model says", "issue score", "split"]
    assert describe_label_issue(item) == " · ".join(f"{p['key']} {p['value']}" + (f" ({p['note']})" if p["note"] else "")
                                                   for p in parts)
    assert describe_label_issue(item) in format_audit(audit(cells["run"], dataset_issues=False))
    html = write_report(cells["run"], tmp_path / "r.html", maps=False).path.read_text()
    row = html[html.index(f'<tr class="issue" data-id="{item["id"]}"'):]
    row = row[:row.index("</tr>")]
    cells_html = [f'<span class="k">{p["key"]}</span> ' + (f"<b>{p['value']}</b>" if p["strong"] else p["value"])
                  + (f' <span class="hint">({p["note"]})</span>' if p["note"] else "") for p in parts]
    assert all(c in row for c in cells_html), row
    assert "".join(f"<th>{p['key']}</th>" for p in parts) in html
    review = client.get("/reviews").text
    card = review[review.index(f'data-id="{item["id"]}"'):]
    assert describe_label_issue(item).replace(f"labelled {item['label']} ", f"labelled <b>{item['label']}</b> ").replace(
        f"model says {item['model_class']} ", f"model says <b>{item['model_class']}</b> ") in card
    assert describe_label_issue(item) in client.get("/issues?type=label").text


# ------------------------------------------------------------------------ fine verdicts
def test_a_fine_verdict_is_never_exported_with_a_suggested_class(cells, client, tmp_path):
    import pandas as pd

    from mikata.analysis.export import export_run
    from mikata.analysis.run import open_run

    ov = overview(cells["run"])
    a, b = ov.label_issues[0], ov.label_issues[1]
    h = {"origin": BASE}
    got = client.post(f"/api/review/{a['id']}", json={"verdict": "fine", "suggested": 3}, headers=h)
    assert got.status_code == 200 and got.json()["suggested"] is None
    assert client.post(f"/api/review/{b['id']}", json={"verdict": "wrong", "suggested": 4}, headers=h).status_code == 200
    with RunStore.open(cells["run"]) as store:
        assert store.review(a["id"])["suggested"] is None and store.review(b["id"])["suggested"] == 4
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(client.get("/reviews.csv").text))}
    assert rows[a["id"]]["verdict"] == "fine" and rows[a["id"]]["suggested"] == ""
    assert rows[a["id"]]["reviewed_label"] == a["label"]
    assert rows[b["id"]]["suggested"] == "4" and rows[b["id"]]["reviewed_label"] == "4"
    df = open_run(cells["run"]).to_pandas(dataset_issues=False).set_index("id")
    assert df.loc[a["id"], "review"] == "fine" and pd.isna(df.loc[a["id"], "suggested"])
    assert pd.isna(df.loc[a["id"], "review_suggested"]) and df.loc[a["id"], "reviewed_label"] == a["label"]
    assert df.loc[b["id"], "reviewed_label"] == "4" and not pd.isna(df.loc[b["id"], "suggested"])
    out = export_run(cells["run"], tmp_path / "e.csv")
    exported = {int(r["id"]): r for r in csv.DictReader(open(out, encoding="utf-8"))}
    assert exported[a["id"]]["suggested"] == "" and exported[a["id"]]["reviewed_label"] == a["label"]
    assert exported[a["id"]]["cell_type"] in ("plain", "inverted")  # the fields travel with the export
    for i in (a["id"], b["id"]):
        client.post(f"/api/review/{i}", json={"verdict": None}, headers=h)


def test_a_run_view_browses_its_rows_as_the_app_does(cells):
    """``RunView.grid_ids`` / ``field_mask`` / ``neighbours`` (what the app's grid and image pages call)
    against a brute-force sort of the view's rows."""
    from mikata.analysis.view import RunView
    from mikata.errors import ChoiceError

    for view in (RunView(cells["run"]), RunView(cells["run"], split="test")):
        ov = view.overview()
        d = ov.data
        kind = field_values(d, "cell_type")
        mask, text = view.field_mask("0:inverted")
        assert text == "cell_type = inverted" and mask.tolist() == (kind == "inverted").tolist()
        assert view.field_mask("") == (None, "")
        with pytest.raises(ChoiceError):
            view.field_mask("7:x")
        conf = [float(d.probs[r, d.preds[r]]) for r in range(len(d))]
        for true, pred, where in ((-1, -1, ""), (0, -1, ""), (-1, 1, "0:inverted"), (1, 1, ""), (2, 3, "0:plain")):
            rows = [r for r in range(len(d)) if (true < 0 or d.labels[r] == true) and (pred < 0 or d.preds[r] == pred)
                    and (not where or kind[r] == where.split(":")[1])]
            want = [int(d.ids[r]) for r in sorted(rows, key=lambda r: (-conf[r], int(d.ids[r])))]
            assert view.grid_ids(ov, true, pred, where).tolist() == want, (true, pred, where)
        ids = d.ids.tolist()
        assert view.neighbours(ids[0], ov) == (None, ids[1]) and view.neighbours(ids[-1], ov) == (ids[-2], None)
        assert view.neighbours(ids[3], ov) == (ids[2], ids[4])
        site = field_values(d, "site")
        assert view.image_fields(ids[0], ov) == [("cell_type", str(kind[0])), ("site", str(site[0]))]


# ----------------------------------------------------------------------- fields in the app
def test_grid_and_issues_filter_by_a_field_value(cells, client):
    ids = _ids_by_path(cells["run"])
    inverted = {ids[p] for p in cells["inverted"]}
    page = client.get("/grid?where=0:inverted").text
    got = {int(x) for x in re.findall(r'class="tile[^"]*" href="/image/\d+" data-id="(\d+)"', page)}
    assert got == inverted and "cell_type = inverted" in page
    wrong = client.get("/grid?true=-1&pred=-1&where=0:inverted").text.count('class="tile wrong')
    d = load_run(cells["run"])
    kind = field_values(d, "cell_type")
    assert wrong == int(((kind == "inverted") & (d.labels != d.preds)).sum())
    def total(url: str) -> int:
        return int(re.search(r'id="issue-total">(\d+)<', client.get(url).text).group(1))

    weak = "/issues?type=underperforming_group"
    assert total(weak + "&where=0:inverted") + total(weak + "&where=0:plain") == total(weak) > 0
    shown = {int(x) for x in re.findall(r'class="review issue-item" data-id="(\d+)"',
                                         client.get(weak + "&where=0:inverted").text)}
    assert shown and shown <= inverted
    lab = client.get("/issues?type=label&where=0:inverted").text
    flagged = set(d.ids[label_issue_ranking(d)].tolist()) & inverted
    assert re.search(r'id="issue-total">(\d+)<', lab).group(1) == str(len(flagged))
    assert client.get("/grid?where=7:x").status_code == 400
    assert client.get("/grid?where=nonsense").status_code == 400


def test_the_dashboard_has_a_table_per_field_linking_to_its_images(cells, client):
    d = load_run(cells["run"])
    page = client.get("/").text
    assert page.count('class="field-section"') == 2
    section = page[page.index('data-field="cell_type"'):page.index('data-field="site"')]
    assert re.findall(r'<tr class="field-group" data-value="([^"]*)">', section) == ["inverted", "plain"]
    assert 'href="/grid?where=0%3Ainverted"' in section
    worst = group_by(d, "cell_type")[0]
    assert f"<td class=\"num\">{worst['images']}</td><td class=\"num\">{worst['errors']}</td>" in section


def test_field_values_from_the_file_are_escaped_never_markup(cells, client):
    from urllib.parse import quote

    for path in ("/", "/grid", "/issues", "/embedding"):
        page = client.get(path).text
        assert "<img src=x" not in page, path
    grid = client.get("/grid").text
    assert "site = &lt;img src=x onerror=" in grid  # shown as text in the filter menu
    hostile = client.get("/grid?where=" + quote("1:" + HOSTILE)).text
    n = sum(1 for i in range(300) if i % 7 == 0)
    assert len(re.findall(r'class="tile[^"]*" href="/image/\d+" data-id="\d+"', hostile)) == n
    ids = _ids_by_path(cells["run"])
    some = next(i for p, i in ids.items() if p.endswith("img_0007.png"))  # 7 % 7 == 0: the hostile site
    image = client.get(f"/image/{some}").text
    assert "site = &lt;img src=x" in image and "cell_type = " in image
    emb = client.get("/api/embedding").json()
    assert HOSTILE in emb["fields"]["site"]["values"]
    assert len(emb["fields"]["cell_type"]["codes"]) == len(emb["ids"])


def test_report_has_a_section_per_field_with_escaped_values(cells, tmp_path):
    from mikata.report.build import write_report

    html = write_report(cells["run"], tmp_path / "f.html", maps=False).path.read_text()
    assert html.count('class="field-section"') == 2
    d = load_run(cells["run"])
    section = html[html.index('data-field="cell_type"'):html.index('data-field="site"')]
    values = re.findall(r'<tr class="field-group" data-value="([^"]*)">', section)
    assert values == [g["value"] for g in group_by(d, "cell_type")]
    assert "<img src=x" not in html and "&lt;img src=x onerror=" in html


def test_run_to_pandas_carries_the_fields(cells):
    from mikata.analysis.run import open_run

    run = open_run(cells["run"])
    assert run.fields() == ["cell_type", "site"]
    table = run.group_by("cell_type")
    assert table["cell_type"].tolist() == ["inverted", "plain"] and table["images"].tolist() == [75, 225]
    assert run.summary()["label_issues"] == len(label_issue_ranking(load_run(cells["run"])))
    df = run.to_pandas(dataset_issues=False)
    assert set(df["cell_type"]) == {"plain", "inverted"}
    assert set(df.loc[df["path"].isin(cells["inverted"]), "cell_type"]) == {"inverted"}
    np.testing.assert_array_equal(df["cell_type"].to_numpy(), field_values(load_run(cells["run"]), "cell_type"))


def test_shards_of_a_manifest_scan_merge_with_their_fields(cells, tmp_path):
    from mikata.runs.merge import merge_runs
    from mikata.scanning.scan import scan

    for i in range(2):
        scan(cells["handle"], cells["manifest"], tmp_path / f"s{i}", batch_size=64, workers=0, progress=False,
             fractions=(0.6, 0.2, 0.2), shard=(i, 2))
    merge_runs(tmp_path / "all", [tmp_path / "s0", tmp_path / "s1"])
    merged, one = load_run(tmp_path / "all"), load_run(cells["run"])
    by_path = dict(zip(map(str, one.paths), field_values(one, "site")))
    assert [by_path[str(p)] for p in merged.paths] == list(field_values(merged, "site"))
    assert group_by(merged, "cell_type") == group_by(one, "cell_type")


# ------------------------------------------------------- fields where a reviewer decides (issue 31.7)
def test_fields_on_review_cards_grid_tiles_and_audit_suspect_lines(cells, client, capsys):
    """The manifest fields beside each suspected label error in the audit, on each review card and on each
    grid/issue tile: bounded in length (the hostile value is cut), escaped (never markup)."""
    from mikata.analysis.fields import MAX_VALUE_CHARS, fields_text
    from mikata.cli import main

    d = load_run(cells["run"])
    kind, site = field_values(d, "cell_type"), field_values(d, "site")
    want = {int(d.ids[r]): fields_text([("cell_type", kind[r]), ("site", site[r])]) for r in range(len(d))}
    assert main(["audit", str(cells["run"]), "--json", "--no-dataset-issues"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert all(i["fields"] == want[i["id"]] for i in a["label_issues"])
    assert main(["audit", str(cells["run"]), "--no-dataset-issues"]) == 0
    text = capsys.readouterr().out
    first = a["label_issues"][0]
    line = next(ln for ln in text.splitlines() if ln.startswith("  ") and first["path"].rsplit("/", 1)[-1] in ln
                and "labelled" in ln)
    assert line.endswith(f"[{want[first['id']]}]")
    cut = HOSTILE[:MAX_VALUE_CHARS - 1] + "…"
    assert fields_text([("site", HOSTILE)]) == f"site={cut}"
    # review cards: one fields line per card, escaped
    page = client.get("/reviews").text
    cards = re.findall(r'<div class="review review-card[^"]*" data-id="(\d+)".*?<div class="fields" title="[^"]*">'
                       r'([^<]*)</div>', page, re.S)
    assert len(cards) == page.count('class="review review-card') > 0
    import html

    assert all(html.unescape(t) == want[int(i)] for i, t in cards)
    assert "<img src=x" not in page
    # grid and issue tiles
    for url in ("/grid", "/issues?type=label"):
        page = client.get(url).text
        tiles = re.findall(r'data-id="(\d+)" title="[^"]*">.*?<span class="fields" title="[^"]*">([^<]*)</span>',
                           page, re.S)
        assert tiles and all(html.unescape(t) == want[int(i)] for i, t in tiles), url
        assert "<img src=x" not in page
