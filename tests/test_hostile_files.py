"""Issue 34 part 1: a run directory never writes or serves outside itself, and its format is versioned.

Every name inside a run may be a planted symbolic link (to a file of the user's, or to a folder
elsewhere) or something that is not a file. Writes through such a name are refused in one line and
the user's file stays byte-identical; folders that point elsewhere are neither served nor embedded.
The manifest's format is read, older formats are migrated on open, a newer one is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hostile_support import small_run
from mikata.runs.layout import RunLayout, UnsafeRunFileError
from mikata.runs.format import FORMAT, RunFormatError, migrate_manifest
from mikata.runs.store import RunStore
from mikata.cli import main

USER_BYTES = b"my thesis, chapter 3\n" * 2000  # 42,000 bytes of the user's own


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return small_run(tmp_path_factory.mktemp("files"), n=12)


@pytest.fixture
def run(base_run, tmp_path):
    """A fresh copy of the scanned run (its images stay where the scan found them)."""
    dst = tmp_path / "run"
    shutil.copytree(base_run, dst)
    return dst


@pytest.fixture
def user_file(tmp_path):
    p = tmp_path / "home" / "thesis.tex"
    p.parent.mkdir()
    p.write_bytes(USER_BYTES)
    return p


def _plant(run: Path, name: str, target: Path) -> None:
    p = run / name
    if p.exists() or p.is_symlink():
        p.unlink()
    p.symlink_to(target)


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.err.strip()


def _scan_again(run: Path) -> None:
    from test_scan_support import mnist_handle

    from mikata.scanning.scan import scan

    scan(mnist_handle(), _digits(run), run, batch_size=16, workers=0, progress=False)


def _digits(run: Path) -> Path:
    return Path(json.loads((run / "manifest.json").read_text())["dataset_root"])


# ---------------------------------------------------------------------------- writes through links
def test_a_scan_refuses_a_writer_lock_linked_to_a_user_file(run, user_file):
    _plant(run, "writer.lock", user_file)
    with pytest.raises(UnsafeRunFileError, match=r"writer\.lock is a symbolic link"):
        _scan_again(run)
    assert user_file.read_bytes() == USER_BYTES


def test_the_run_lock_refuses_a_fifo_without_waiting(run):
    from mikata.runs.lock import RunLock

    (run / "writer.lock").unlink()
    os.mkfifo(run / "writer.lock")
    with pytest.raises(UnsafeRunFileError, match=r"writer\.lock is a named pipe"):
        RunLock.acquire(run)


def test_report_refuses_a_report_html_linked_to_a_user_file(run, user_file, capsys):
    _plant(run, "report.html", user_file)
    code, err = _cli(capsys, "report", str(run), "--no-maps")
    assert code == 2
    assert "report.html is a symbolic link" in err and len(err.splitlines()) == 1
    assert user_file.read_bytes() == USER_BYTES


def test_report_refuses_an_out_file_that_is_a_link(run, user_file, tmp_path, capsys):
    link = tmp_path / "out.html"
    link.symlink_to(user_file)
    code, err = _cli(capsys, "report", str(run), "--no-maps", "--out", str(link))
    assert code == 2 and "out.html is a symbolic link" in err
    assert user_file.read_bytes() == USER_BYTES


def test_report_refuses_a_fifo_named_report_html(run, capsys):
    os.mkfifo(run / "report.html")
    code, err = _cli(capsys, "report", str(run), "--no-maps")
    assert code == 2 and "report.html is a named pipe" in err


def test_a_report_replaces_its_own_file_whole(run, capsys):
    (run / "report.html").write_text("old")
    code, _ = _cli(capsys, "report", str(run), "--no-maps")
    assert code == 0
    text = (run / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html") or text.lower().startswith("<!doctype html")
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_export_refuses_an_export_file_linked_to_a_user_file(run, user_file, capsys, fmt):
    _plant(run, f"export.{fmt}", user_file)
    code, err = _cli(capsys, "export", str(run), "--format", fmt)
    assert code == 2 and f"export.{fmt} is a symbolic link" in err
    assert user_file.read_bytes() == USER_BYTES


def test_export_writes_its_default_file_inside_the_run(run, capsys):
    code, _ = _cli(capsys, "export", str(run), "--format", "csv")
    assert code == 0
    lines = (run / "export.csv").read_text().splitlines()
    assert len(lines) == 1 + 12


def test_a_resumed_scan_refuses_an_embed_file_linked_to_a_user_file(run, tmp_path):
    user = tmp_path / "vectors.bin"
    user.write_bytes((run / "embed.f16").read_bytes() + b"\x01" * 19_000)  # longer than the committed vectors
    before = user.read_bytes()
    _plant(run, "embed.f16", user)
    with pytest.raises(UnsafeRunFileError, match=r"embed\.f16 is a symbolic link"):
        _scan_again(run)
    assert user.read_bytes() == before


@pytest.mark.parametrize("kind", ["probs", "embed", "channels"])
def test_a_reader_refuses_a_vector_file_that_is_a_link(run, tmp_path, kind):
    user = tmp_path / f"{kind}.bin"
    user.write_bytes((run / f"{kind}.f16").read_bytes())
    _plant(run, f"{kind}.f16", user)
    with pytest.raises(UnsafeRunFileError, match=rf"{kind}\.f16 is a symbolic link"):
        RunStore.open(run)


def test_a_vector_file_replaced_by_a_directory_is_refused_not_a_traceback(run, capsys):
    (run / "probs.f16").unlink()
    (run / "probs.f16").mkdir()
    code, err = _cli(capsys, "audit", str(run))
    assert code == 2 and "probs.f16 is not a regular file (a directory)" in err


def test_a_database_linked_elsewhere_is_refused_and_left_alone(run, tmp_path):
    other = tmp_path / "other.sqlite"
    shutil.copy(run / "run.sqlite", other)
    before = other.read_bytes()
    _plant(run, "run.sqlite", other)
    with pytest.raises(UnsafeRunFileError, match=r"run\.sqlite is a symbolic link"):
        RunStore.open(run, annotate=True)
    assert other.read_bytes() == before


def test_a_wal_file_linked_to_a_user_file_is_refused(run, user_file):
    _plant(run, "run.sqlite-wal", user_file)
    with pytest.raises(UnsafeRunFileError, match=r"run\.sqlite-wal is a symbolic link"):
        RunStore.open(run, annotate=True)
    assert user_file.read_bytes() == USER_BYTES


def test_a_manifest_that_is_a_link_is_refused(run, tmp_path):
    other = tmp_path / "m.json"
    shutil.copy(run / "manifest.json", other)
    _plant(run, "manifest.json", other)
    with pytest.raises(UnsafeRunFileError, match=r"manifest\.json is a symbolic link"):
        RunStore.open(run)


def test_check_names_a_linked_run_file_and_exits_non_zero(run, user_file, capsys):
    _plant(run, "embed.f16", user_file)
    code = main(["check", str(run)])
    out = capsys.readouterr().out
    assert code != 0 and "embed.f16 is a symbolic link" in out


def test_check_reports_a_linked_vector_file(run, user_file):
    from mikata.runs.integrity import check_run

    _plant(run, "embed.f16", user_file)
    report = check_run(run)
    assert not report.ok
    assert any("embed.f16 is a symbolic link" in p.what for p in report.problems)
    assert user_file.read_bytes() == USER_BYTES


# ---------------------------------------------------------------------------- folders pointing outside
def _png(path: Path, value: int = 200) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture
def outside(tmp_path):
    """A folder outside the run holding what a hostile run would like served: PNGs and a scorecard."""
    out = tmp_path / "private"
    _png(out / "holiday.png")
    _png(out / "sub" / "grid.png")
    (out / "scorecard.json").write_text(json.dumps({"methods": ["gradcam"], "figures": ["holiday.png"]}))
    (out / "units.json").write_text(json.dumps({"layer": "x", "units": []}))
    return out


def test_a_featurevis_link_pointing_outside_is_not_listed(run, outside):
    from mikata.runs.attachments import featurevis_gallery, featurevis_images, featurevis_pngs

    _plant(run, "featurevis", outside)
    assert featurevis_pngs(run) == [] and featurevis_images(run) == [] and featurevis_gallery(run) == []


def test_a_real_featurevis_folder_is_still_listed(run):
    from mikata.runs.attachments import featurevis_pngs

    _png(run / "featurevis" / "classes" / "grid.png")
    assert [p.name for p in featurevis_pngs(run)] == ["grid.png"]


def test_a_featurevis_subfolder_link_pointing_outside_is_not_listed(run, outside):
    from mikata.runs.attachments import featurevis_pngs

    (run / "featurevis").mkdir()
    (run / "featurevis" / "mine").symlink_to(outside)
    assert featurevis_pngs(run) == []


def test_an_evaluate_link_pointing_outside_is_not_read(run, outside):
    from mikata.runs.attachments import read_scorecard, scorecard_figure

    _plant(run, "evaluate", outside)
    assert read_scorecard(run) is None
    assert scorecard_figure(run, "holiday.png") is None


def test_a_scorecard_file_linked_outside_a_real_evaluate_folder_is_not_read(run, outside):
    from mikata.runs.attachments import read_scorecard

    (run / "evaluate").mkdir()
    (run / "evaluate" / "scorecard.json").symlink_to(outside / "scorecard.json")
    assert read_scorecard(run) is None


def test_a_units_link_pointing_outside_is_not_read(run, outside):
    from mikata.analysis.units import read_units

    _plant(run, "units", outside)
    assert read_units(run) is None


def test_the_report_embeds_nothing_from_linked_folders(run, outside, capsys):
    _plant(run, "featurevis", outside)
    _plant(run, "evaluate", outside)
    code, _ = _cli(capsys, "report", str(run), "--no-maps")
    assert code == 0
    html = (run / "report.html").read_text()
    assert "holiday.png" not in html and "sub/grid.png" not in html


def test_the_app_serves_nothing_from_linked_folders(run, outside):
    from fastapi.testclient import TestClient
    from test_scan_support import mnist_handle

    from mikata.server import create_app

    _plant(run, "featurevis", outside)
    _plant(run, "evaluate", outside)
    token = "t" * 48
    c = TestClient(create_app(run, token=token, port=8765, handle=mnist_handle()), base_url="http://127.0.0.1:8765")
    assert c.get(f"/?token={token}").status_code == 200
    assert c.get("/featurevis/0.png").status_code == 404
    assert c.get("/scorecard/figure/0.png").status_code == 404
    assert "holiday" not in c.get("/featurevis").text


def test_the_overview_cache_is_not_written_through_a_linked_cache_folder(run, tmp_path):
    from mikata.analysis.audit_summary import audit

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _plant(run, "cache", elsewhere)
    summary = audit(run, n=2)
    assert summary["images"] == 12
    assert list(elsewhere.iterdir()) == []


def test_a_planted_cache_file_link_is_ignored(run, tmp_path):
    from mikata.analysis.audit_summary import audit

    audit(run, n=2)  # writes run/cache/overview-all.npz
    cached = next((run / "cache").glob("overview-*.npz"))
    user = tmp_path / "x.npz"
    user.write_bytes(cached.read_bytes())
    before = user.read_bytes()
    cached.unlink()
    cached.symlink_to(user)
    assert audit(run, n=2)["images"] == 12
    assert user.read_bytes() == before


# ---------------------------------------------------------------------------- layout unit cases
def test_writable_folder_refuses_a_link_and_a_file(run, outside):
    lay = RunLayout(run)
    _plant(run, "evaluate", outside)
    with pytest.raises(UnsafeRunFileError, match=r"evaluate is a symbolic link"):
        lay.writable_folder("evaluate/parts")
    (run / "units").write_text("not a folder")
    with pytest.raises(UnsafeRunFileError, match=r"units is not a regular file|units is"):
        lay.writable_folder("units")
    assert not (outside / "parts").exists()


def test_write_scorecard_refuses_a_figure_name_linked_to_a_user_file(run, user_file):
    from mikata.evaluation.scorecard import write_scorecard

    folder = run / "evaluate"
    folder.mkdir()
    (folder / "evaluate.png").symlink_to(user_file)

    class Result:
        card = {"methods": []}

    with pytest.raises(UnsafeRunFileError, match=r"evaluate\.png is a symbolic link"):
        write_scorecard(Result(), str(folder))
    assert user_file.read_bytes() == USER_BYTES


def test_a_scorecard_json_link_is_refused_by_the_writer(run, user_file):
    lay = RunLayout(run)
    folder = lay.writable_folder("evaluate")
    (folder / "scorecard.json").symlink_to(user_file)
    with pytest.raises(UnsafeRunFileError):
        with lay.replacing(folder / "scorecard.json", binary=False) as f:
            f.write("{}")
    assert user_file.read_bytes() == USER_BYTES


def test_a_vector_kind_that_is_not_a_plain_name_is_refused(run):
    with pytest.raises(UnsafeRunFileError, match="not a plain name"):
        RunLayout(run).vector("../../etc/passwd")


def test_the_layout_names_every_file_the_scan_writes(run):
    lay = RunLayout(run)
    named = {lay.manifest, lay.database, lay.lock} | {lay.vector(k) for k in
                                                      ("probs", "embed", "channels", "stats", "thumbs")}
    assert {p for p in run.iterdir() if p.is_file()} <= named | {run / "run.sqlite-wal", run / "run.sqlite-shm"}


# ---------------------------------------------------------------------------- the run format
def _set_manifest(run: Path, **changes) -> None:
    m = json.loads((run / "manifest.json").read_text())
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    (run / "manifest.json").write_text(json.dumps(m))


def test_a_new_scan_writes_the_current_format_with_its_data_roots(run):
    m = json.loads((run / "manifest.json").read_text())
    assert m["format"] == FORMAT == "mikata-run/2"
    assert m["data_roots"] == [os.path.realpath(m["dataset_root"])]


def test_a_format_1_run_is_migrated_on_open(run):
    m = json.loads((run / "manifest.json").read_text())
    m["identity"].pop("resize")
    _set_manifest(run, format="mikata-run/1", data_roots=None, default_layer=None, identity=m["identity"])
    with RunStore.open(run) as store:
        assert store.manifest["format"] == FORMAT
        assert store.manifest["data_roots"] == [m["dataset_root"]]
        assert store.identity["resize"] == "shorter"
        assert store.manifest["default_layer"] is None


def test_a_manifest_without_a_format_is_format_1(run):
    _set_manifest(run, format=None, data_roots=None)
    with RunStore.open(run) as store:
        assert store.manifest["format"] == FORMAT and store.count() == 12


def test_a_resumed_scan_writes_a_format_1_run_back_as_the_current_format(run):
    _set_manifest(run, format="mikata-run/1", data_roots=None)
    _scan_again(run)
    m = json.loads((run / "manifest.json").read_text())
    assert m["format"] == FORMAT and m["data_roots"] == [os.path.realpath(m["dataset_root"])]


@pytest.mark.parametrize("fmt", ["mikata-run/3", "mikata-run/99"])
def test_a_newer_format_is_refused_saying_to_upgrade(run, capsys, fmt):
    _set_manifest(run, format=fmt)
    with pytest.raises(RunFormatError, match="newer than this mikata reads"):
        RunStore.open(run)
    code, err = _cli(capsys, "audit", str(run))
    assert code == 2 and "upgrade mikata" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("fmt", ["mikata-run/0", "other-tool/2", "mikata-run/x", 2, None])
def test_a_foreign_format_is_refused(fmt):
    m = {"format": fmt, "identity": {"classes": ["a"]}}
    if fmt is None:
        m["format"] = None
    with pytest.raises(RunFormatError, match="not a mikata run format"):
        migrate_manifest(m)


def test_a_newer_format_is_a_problem_for_check(run):
    from mikata.runs.integrity import check_run

    _set_manifest(run, format="mikata-run/7")
    report = check_run(run)
    assert not report.ok and any("newer than this mikata reads" in p.what for p in report.problems)


def test_data_roots_that_are_not_a_list_of_folders_are_refused(run):
    _set_manifest(run, data_roots="/")
    with pytest.raises(RunFormatError, match="data_roots"):
        RunStore.open(run)


def test_migration_leaves_the_callers_manifest_untouched():
    m = {"format": "mikata-run/1", "identity": {"classes": ["a"]}, "dataset_root": "/d"}
    out = migrate_manifest(m)
    assert "data_roots" not in m and "resize" not in m["identity"] and out["data_roots"] == ["/d"]


def test_a_resumed_scan_still_refuses_another_model_after_migration(run):
    import dataclasses

    from test_scan_support import mnist_handle

    from mikata.runs.store import RunStoreError
    from mikata.scanning.scan import scan

    _set_manifest(run, format="mikata-run/1", data_roots=None)
    h = mnist_handle()
    other = dataclasses.replace(h, preprocessing=dataclasses.replace(h.preprocessing, resize="stretch"))
    if other.preprocessing == h.preprocessing:
        other = dataclasses.replace(h, preprocessing=dataclasses.replace(h.preprocessing, resize="shorter"))
    with pytest.raises(RunStoreError, match="differs in: resize"):
        scan(other, _digits(run), run, batch_size=16, workers=0, progress=False)


def test_the_database_is_untouched_by_a_refused_open(run):
    _set_manifest(run, format="mikata-run/3")
    con = sqlite3.connect(run / "run.sqlite")
    con.execute("DROP TABLE IF EXISTS reviews")
    con.commit()
    con.close()
    with pytest.raises(RunFormatError):
        RunStore.open(run, annotate=True)  # what the web app opens
    tables = {t for (t,) in sqlite3.connect(run / "run.sqlite").execute("SELECT name FROM sqlite_master")}
    assert "reviews" not in tables and "images" in tables


# ---------------------------------------------------------------------------- the widened zoo
def test_a_report_html_hard_linked_to_a_user_file_leaves_it_untouched(run, user_file, capsys):
    os.link(user_file, run / "report.html")
    code, _ = _cli(capsys, "report", str(run), "--no-maps")
    assert code == 0  # the report replaces the name; the user's file (the other name) keeps its bytes
    assert user_file.read_bytes() == USER_BYTES and (run / "report.html").read_bytes() != USER_BYTES


def test_an_embed_file_hard_linked_to_a_user_file_is_refused_on_resume(run, tmp_path):
    user = tmp_path / "vectors.bin"
    os.link(run / "embed.f16", user)
    with open(user, "ab") as f:
        f.write(b"\x02" * 5000)  # uncommitted bytes a resume would truncate
    before = user.read_bytes()
    with pytest.raises(UnsafeRunFileError, match=r"embed\.f16 has 2 hard links"):
        _scan_again(run)
    assert user.read_bytes() == before


def test_export_refuses_an_out_file_that_is_a_link(run, user_file, tmp_path, capsys):
    link = tmp_path / "table.csv"
    link.symlink_to(user_file)
    code, err = _cli(capsys, "export", str(run), "--out", str(link))
    assert code == 2 and "table.csv is a symbolic link" in err
    assert user_file.read_bytes() == USER_BYTES


def test_a_writer_lock_that_is_a_directory_is_refused(run):
    (run / "writer.lock").unlink()
    (run / "writer.lock").mkdir()
    with pytest.raises(UnsafeRunFileError, match=r"writer\.lock is a directory"):
        _scan_again(run)


@pytest.mark.parametrize("name", ["manifest.json", "run.sqlite"])
def test_a_fifo_in_place_of_a_run_file_is_refused_without_waiting(run, name):
    (run / name).unlink()
    os.mkfifo(run / name)
    with pytest.raises(UnsafeRunFileError, match=rf"{name.replace('.', chr(92) + '.')} is a named pipe"):
        RunStore.open(run)


def test_check_names_a_fifo_manifest_without_waiting(run):
    from mikata.runs.integrity import check_run

    (run / "manifest.json").unlink()
    os.mkfifo(run / "manifest.json")
    report = check_run(run)
    assert not report.ok and any("manifest.json is a named pipe" in p.what for p in report.problems)


def test_a_fifo_scorecard_units_card_and_png_are_skipped_without_waiting(run):
    from mikata.runs.attachments import featurevis_pngs, read_scorecard
    from mikata.analysis.units import read_units

    for folder in ("evaluate", "units", "featurevis"):
        (run / folder).mkdir()
    os.mkfifo(run / "evaluate" / "scorecard.json")
    os.mkfifo(run / "units" / "units.json")
    os.mkfifo(run / "featurevis" / "grid.png")
    assert read_scorecard(run) is None and read_units(run) is None and featurevis_pngs(run) == []


def test_a_fifo_overview_cache_is_rebuilt_without_waiting(run):
    from mikata.analysis.audit_summary import audit

    (run / "cache").mkdir()
    os.mkfifo(run / "cache" / "overview-all.npz")
    assert audit(run, n=2)["images"] == 12


def test_a_featurevis_name_that_is_a_file_is_absent(run):
    from mikata.runs.attachments import featurevis_gallery

    (run / "featurevis").write_bytes(b"\x89PNG")
    assert featurevis_gallery(run) == []


def test_a_scorecard_figure_that_climbs_out_is_refused(run, outside):
    from mikata.runs.attachments import scorecard_figure

    (run / "evaluate").mkdir()
    rel = os.path.relpath(outside / "holiday.png", run / "evaluate")
    assert scorecard_figure(run, rel) is None
    assert scorecard_figure(run, "/etc/hostname.png") is None


def test_check_of_an_older_format_run_is_clean(run):
    from mikata.runs.integrity import check_run

    _set_manifest(run, format="mikata-run/1", data_roots=None)
    report = check_run(run)
    assert report.ok, report.format()


def test_migrating_a_current_manifest_changes_nothing(run):
    m = json.loads((run / "manifest.json").read_text())
    assert migrate_manifest(m) == m


@pytest.mark.parametrize("fmt", [["mikata-run/2"], {"v": 2}, 2.0, True])
def test_a_format_that_is_not_text_is_refused(fmt):
    with pytest.raises(RunFormatError, match="not a mikata run format"):
        migrate_manifest({"format": fmt, "identity": {"classes": ["a"]}})


def test_a_merge_of_a_format_1_shard_writes_the_current_format(run, tmp_path):
    from mikata.runs.merge import merge_runs

    old = tmp_path / "old"
    shutil.copytree(run, old)
    _set_manifest(old, format="mikata-run/1", data_roots=None)
    merge_runs(tmp_path / "merged", [old])
    m = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    assert m["format"] == FORMAT and m["data_roots"] == [json.loads((run / "manifest.json").read_text())
                                                       ["dataset_root"]]
    with RunStore.open(tmp_path / "merged") as store:
        assert store.count() == 12


def test_a_run_folder_name_never_climbs_out(run):
    lay = RunLayout(run)
    assert lay.folder("../") is None and lay.folder("featurevis/../../x") is None and lay.folder("/etc") is None
    with pytest.raises(ValueError):
        lay.writable_folder("../escaped")
    assert not (run.parent / "escaped").exists()


@pytest.mark.parametrize("roots", [["/"], ["/etc"], ["/definitely/not/here"]])
def test_check_says_when_a_data_root_cannot_serve_images(run, roots):
    from mikata.runs.integrity import check_run

    _set_manifest(run, data_roots=roots)
    report = check_run(run)
    problems = [p for p in report.problems if "may not serve images" in p.what]
    assert len(problems) == 1 and problems[0].severity == "stale" and str(roots[0]) in problems[0].what


def test_a_concepts_folder_linked_outside_is_neither_read_nor_written(run, tmp_path):
    from mikata.concepts import store as S

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "atlas.json").write_text(json.dumps({"key": "x", "planted": True}))
    _plant(run, "concepts", elsewhere)
    assert S.read_json(S.folder(run) / "atlas.json") is None
    with pytest.raises(UnsafeRunFileError, match=r"concepts is a symbolic link"):
        S.write_json(S.folder(run) / "atlas.json", {"key": "y"})
    assert json.loads((elsewhere / "atlas.json").read_text())["planted"] is True


def test_concept_files_are_written_whole_in_a_real_folder(run):
    from mikata.concepts import store as S

    S.write_json(S.folder(run) / "atlas.json", {"key": "k"})
    assert S.read_json(S.folder(run) / "atlas.json") == {"key": "k"}
    assert [p.name for p in (run / "concepts").iterdir()] == ["atlas.json"]
