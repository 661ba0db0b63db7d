"""``mikata.open_run`` and ``mikata export``: the same numbers as ``mikata audit --json``, as tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mikata
from mikata.cli import main
from test_scan_support import planted_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def run(planted):
    return mikata.open_run(planted["run"], model=planted["handle"])


def _audit_json(planted, capsys) -> dict:
    assert main(["audit", str(planted["run"]), "--json", "--issues", "100000"]) == 0
    return json.loads(capsys.readouterr().out)


def test_open_run_gives_the_audit_numbers(run, planted, capsys):
    a = _audit_json(planted, capsys)
    s = run.summary()
    assert s["images"] == a["images"] and s["skipped"] == len(a["skipped"]) == 4
    assert s["accuracy"] == pytest.approx(a["accuracy"]) and s["top5_accuracy"] == pytest.approx(a["top5_accuracy"])
    cm = run.confusion("row")
    assert list(cm.index) == a["confusion"]["classes"] == list(cm.columns)
    assert np.allclose(cm.to_numpy(), a["confusion"]["row_normalized"], atol=5e-5)
    assert run.confusion(None).to_numpy().tolist() == a["confusion"]["counts"]
    pairs = run.pairs()
    assert pairs[["a", "b", "a_as_b", "b_as_a"]].to_dict("records") == a["confused_pairs"]
    issues = run.label_issues()
    assert issues["path"].tolist() == [i["path"] for i in a["label_issues"]]
    assert issues["suggested"].tolist() == [i["suggested"] for i in a["label_issues"]]
    per_class = {c["class"]: c for c in a["per_class"]}
    for name in ("3", "7"):
        most = run.class_like(name, 3)
        least = run.class_like(name, 3, least=True)
        assert most["path"].tolist() == [i["path"] for i in per_class[name]["most_class_like"]]
        assert least["path"].tolist() == [i["path"] for i in per_class[name]["least_class_like"]]


def test_to_pandas_has_one_row_per_scanned_image(run, planted):
    df = run.to_pandas()
    ok = len(planted["paths"])
    assert len(df) == ok and df["id"].is_unique
    assert sorted(df["path"]) == sorted(planted["paths"])
    probs = df[[f"p:{c}" for c in run.class_names]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-2)
    label_idx = df["label"].cat.codes.to_numpy()
    assert np.allclose(df["label_prob"], probs[np.arange(ok), label_idx])
    assert (df["correct"] == (df["label"] == df["predicted"])).all()
    assert ((df["margin"] < 0) == ~df["correct"]).all()  # margin: P(label) - the largest other probability
    assert df["label_issue"].sum() == len(run.label_issues())
    flagged = df[df["label_issue"]]
    # suspected label errors sit at the low end of the label-quality scores
    assert flagged["label_quality"].mean() < df.loc[~df["label_issue"], "label_quality"].mean()
    assert flagged["suggested"].notna().all() and df.loc[~df["label_issue"], "suggested"].isna().all()


def test_images_maps_and_jupyter_display(run, planted):
    df = run.to_pandas()
    ids = df["id"].tolist()[:3]
    imgs = run.images(ids)
    assert len(imgs) == 3 and imgs[0].mode == "L"
    m = run.map(ids[0], "gradcam")
    assert m.shape == (28, 28) and np.isfinite(m).all()
    assert run.overlay(ids[0], "gradcam").size == (28, 28)
    html = run._repr_html_()
    assert "accuracy" in html and "<table" in html and str(run.path) in html


def test_export_parquet_csv_json_carry_every_row_and_the_class_names(planted, tmp_path, capsys):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    with mikata.open_run(planted["run"]).path.joinpath("run.sqlite").open("rb"):
        pass
    from mikata.runs.store import RunStore

    first = mikata.open_run(planted["run"]).to_pandas()["id"].iloc[0]
    with RunStore.open(planted["run"], annotate=True) as store:
        store.set_review(int(first), "wrong", 3)
    assert main(["export", str(planted["run"]), "--out", str(tmp_path / "a.parquet")]) == 0
    df = pd.read_parquet(tmp_path / "a.parquet")
    assert len(df) == len(planted["paths"])
    meta = json.loads(pq.read_schema(tmp_path / "a.parquet").metadata[b"mikata"])
    assert meta["classes"] == [str(i) for i in range(10)]
    row = df[df["id"] == first].iloc[0]
    assert row["review"] == "wrong" and row["review_suggested"] == "3"
    assert main(["export", str(planted["run"]), "--out", str(tmp_path / "a.csv")]) == 0
    csv = pd.read_csv(tmp_path / "a.csv")
    assert len(csv) == len(df) and set(csv.columns) == set(df.columns)
    assert main(["export", str(planted["run"]), "--format", "json", "--out", str(tmp_path / "a.jsonl")]) == 0
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == len(df) and json.loads(lines[0])["path"] == df["path"].iloc[0]
    with RunStore.open(planted["run"], annotate=True) as store:
        store.set_review(int(first), None)


def test_export_errors_exit_2(planted, tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x.csv")]) == 2
    assert main(["export", str(planted["run"]), "--out", str(tmp_path / "x.xlsx")]) == 2
    assert "export format" in capsys.readouterr().err
