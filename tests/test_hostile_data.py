"""Issue 34 part 1: one odd data file never costs a job, manifests are read as their authors meant,
and a run serves images only from its data folders (never from a root read from a file).

Special files (FIFO, links to /dev/zero and /dev/urandom, a sparse 5 GB file, a directory) are
recorded skips with the good images kept; ``mikata check --hashes`` neither hangs nor tracebacks on
them. Manifests: BOM, UTF-16, Latin-1, NUL bytes, 200 KB fields, files listed twice, rows in system
folders, absolute paths outside the CSV's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mikata.presentation.media import UnknownImageError, image_file, image_files
from mikata.runs.store import RunStore
from mikata.cli import main
from mikata.data.datasets import DatasetError, load_dataset, manifest_dataset
from mikata.data.files import MAX_FILE_BYTES, UnreadableFileError, file_digest
from mikata.data.paths import data_roots, file_inside, servable_root, system_folder

N_GOOD = 6


def _digits(folder: Path, n: int = N_GOOD) -> list[Path]:
    from test_scan_support import digit_images, write_folder

    images, labels = digit_images(n)
    return write_folder(folder, images, labels)


def _scan(data, run: Path):
    from test_scan_support import mnist_handle

    from mikata.scanning.scan import scan

    return scan(mnist_handle(), data, run, batch_size=16, workers=0, progress=False)


def _special_files(folder: Path) -> dict[str, str]:
    """Hostile entries named like images in ``folder``; name -> the words its skip reason must hold."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "urandom.png").symlink_to("/dev/urandom")
    with open(folder / "sparse.png", "wb") as f:
        f.truncate(5 * 2**30)  # 5 GB of holes: no disk used
    (folder / "dir.png").mkdir()
    (folder / "empty.png").write_bytes(b"")
    return {"fifo.png": "named pipe", "zero.png": "system folder /dev", "urandom.png": "system folder /dev",
            "sparse.png": "limit for one image file", "dir.png": "a directory", "empty.png": "empty"}


# ---------------------------------------------------------------------------------- special files
@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A class-folder dataset of 6 real digits plus every special file in class 0 (folders skip dirs),
    and a manifest listing the same plus the directory, scanned once each."""
    base = tmp_path_factory.mktemp("zoo")
    good = _digits(base / "data")
    expect = _special_files(base / "data" / "0")
    expect.pop("dir.png")  # a class folder's subfolder is walked, not listed: not a sample
    folder_summary = _scan(base / "data", base / "run")
    rows = ["path,label"] + [f"{p.relative_to(base / 'data')},{p.parent.name}" for p in good]
    rows += [f"0/{name},0" for name in ("fifo.png", "zero.png", "urandom.png", "sparse.png", "dir.png", "empty.png")]
    (base / "data" / "m.csv").write_text("\n".join(rows) + "\n")
    manifest_summary = _scan(base / "data" / "m.csv", base / "run_m")
    return {"base": base, "expect": expect, "folder": folder_summary, "manifest": manifest_summary}


def test_special_files_are_recorded_skips_and_the_good_images_kept(zoo):
    s = zoo["folder"]
    assert s.computed == N_GOOD and s.skipped == len(zoo["expect"])
    reasons = {Path(p).name: r for p, r in s.skipped_files}
    for name, words in zoo["expect"].items():
        assert words in reasons[name], (name, reasons[name])


def test_a_manifest_listing_special_files_and_a_directory_skips_each(zoo):
    s = zoo["manifest"]
    assert s.computed == N_GOOD and s.skipped == 6
    reasons = {Path(p).name: r for p, r in s.skipped_files}
    assert "a directory" in reasons["dir.png"] and "named pipe" in reasons["fifo.png"]


def test_the_skips_are_stored_and_a_rescan_keeps_everything(zoo, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(zoo["base"] / "run", run)
    again = _scan(zoo["base"] / "data", run)
    with RunStore.open(run) as store:
        assert store.count("ok") == N_GOOD and store.count("skipped") == len(zoo["expect"])
    assert again.computed == 0


@pytest.mark.parametrize("hashes", [False, True])
def test_check_does_not_hang_or_traceback_on_special_files(zoo, tmp_path, capsys, hashes):
    """Each scanned image replaced by a FIFO, a /dev/zero link, a directory: "changed", exit 1."""
    run = tmp_path / "run"
    shutil.copytree(zoo["base"] / "run", run)
    data = tmp_path / "data"
    # the FIFO cannot be copied; the 5 GB sparse file is made again sparse (a plain copy writes 5 GB)
    shutil.copytree(zoo["base"] / "data", data, symlinks=True, ignore=shutil.ignore_patterns("fifo.png", "sparse.png"))
    with open(data / "0" / "sparse.png", "wb") as f:
        f.truncate((zoo["base"] / "data" / "0" / "sparse.png").stat().st_size)
    con = sqlite3.connect(run / "run.sqlite")
    paths = [p for (p,) in con.execute("SELECT path FROM images WHERE status='ok' ORDER BY id")]
    moved = [str(data / Path(p).relative_to(zoo["base"] / "data")) for p in paths]
    with con:
        for old, new in zip(paths, moved):
            con.execute("UPDATE images SET path=? WHERE path=?", (new, old))
    con.close()
    os.unlink(moved[0])
    os.mkfifo(moved[0])
    os.unlink(moved[1])
    os.symlink("/dev/zero", moved[1])
    os.unlink(moved[2])
    os.mkdir(moved[2])
    code = main(["check", str(run), "--json"] + (["--hashes"] if hashes else []))
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    changed = [p for p in out["problems"] if "changed since the scan" in p["what"]]
    assert changed and changed[0]["what"].startswith("3 image files changed")


def test_file_digest_hashes_in_chunks_like_hashlib(tmp_path):
    p = tmp_path / "big.bin"
    data = os.urandom(3 * 2**20 + 17)
    p.write_bytes(data)
    digest, size, mtime = file_digest(p)
    assert digest == hashlib.sha1(data).hexdigest() and size == len(data) and mtime == os.stat(p).st_mtime_ns


@pytest.mark.parametrize("make, words", [
    (lambda p: os.mkfifo(p), "named pipe"),
    (lambda p: p.mkdir(), "a directory"),
    (lambda p: p.symlink_to("/dev/zero"), "system folder /dev"),
    (lambda p: p.symlink_to("/dev/null"), "system folder /dev"),
    (lambda p: p.symlink_to("/etc/hostname"), "system folder /etc"),
    (lambda p: p.symlink_to(p.parent / "nowhere"), "cannot read the file"),
])
def test_file_digest_refuses_what_is_not_a_data_file(tmp_path, make, words):
    p = tmp_path / "x.png"
    make(p)
    with pytest.raises(UnreadableFileError, match=words):
        file_digest(p)


def test_file_digest_refuses_a_file_over_the_limit_without_reading_it(tmp_path):
    p = tmp_path / "sparse.png"
    with open(p, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(UnreadableFileError, match="over the 1 GiB limit"):
        file_digest(p)
    small = tmp_path / "small.png"
    small.write_bytes(b"x" * 100)
    with pytest.raises(UnreadableFileError, match="limit"):
        file_digest(small, max_bytes=99)


def test_a_fifo_manifest_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "m.csv")
    with pytest.raises(DatasetError, match="not a regular file"):
        manifest_dataset(tmp_path / "m.csv")


# ---------------------------------------------------------------------------------- manifests
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    base = tmp_path_factory.mktemp("images")
    return _digits(base / "data")


def _rows(images, base: Path) -> list[str]:
    return [f"{os.path.relpath(p, base)},{p.parent.name}" for p in images]


def test_a_file_listed_twice_is_scanned_once(images, tmp_path):
    base = images[0].parents[1]
    m = tmp_path / "m.csv"
    rows = [f"{p},{p.parent.name}" for p in images]
    m.write_text("path,label\n" + "\n".join(rows + rows[:2]) + "\n")
    s = _scan(m, tmp_path / "run")
    assert s.total == N_GOOD and s.computed == N_GOOD
    assert _scan(m, tmp_path / "run").reused == N_GOOD  # and a rerun does not fail the same
    assert base.exists()


def test_a_file_listed_twice_under_two_names_is_one_file(images, tmp_path):
    m = images[0].parents[1] / "twice.csv"
    p = images[0]
    m.write_text(f"path,label\n{p},{p.parent.name}\n{p.parent.name}/../{p.parent.name}/{p.name},{p.parent.name}\n")
    assert len(manifest_dataset(m, [str(i) for i in range(10)], allow_empty=True).samples) == 1


def test_a_file_listed_twice_with_two_labels_is_refused_naming_the_rows(images, tmp_path):
    m = tmp_path / "m.csv"
    p = images[0]
    other = str((int(p.parent.name) + 1) % 10)
    m.write_text(f"path,label\n{p},{p.parent.name}\n{images[1]},{images[1].parent.name}\n{p},{other}\n")
    with pytest.raises(DatasetError, match=r"listed twice with different labels \(non-blank rows 2 and 4\)"):
        manifest_dataset(m, [str(i) for i in range(10)], allow_empty=True)


def test_rows_for_system_files_are_skips_and_a_rerun_works(images, tmp_path):
    data = images[0].parents[1]
    m = data / "hostile.csv"
    rows = _rows(images, data) + ["/etc/passwd,0", "/etc,1", "../../../../../../../../etc/shadow,2",
                                  "/proc/self/environ,3", "/dev/zero,4"]
    m.write_text("path,label\n" + "\n".join(rows) + "\n")
    s = _scan(m, tmp_path / "run")
    assert s.computed == N_GOOD and s.skipped == 5
    reasons = dict(s.skipped_files)
    assert all("system folder" in r for r in reasons.values()), reasons
    again = _scan(m, tmp_path / "run")
    # skipped rows are looked at again (a file may have become readable), and skipped again the same way
    assert again.computed == 0 and again.skipped == 5 and again.reused == N_GOOD
    with RunStore.open(tmp_path / "run") as store:
        assert store.count("ok") == N_GOOD and store.count("skipped") == 5
        assert "/etc/shadow" in {p for p, _ in store.skipped()}


def _bom_manifest(images, path: Path, encoding: str, bom: bytes = b"") -> Path:
    base = path.parent
    text = "path,label\n" + "\n".join(_rows(images, base)) + "\n"
    path.write_bytes(bom + text.encode(encoding))
    return path


@pytest.mark.parametrize("encoding, bom", [("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"),
                                           ("utf-16-be", b"\xfe\xff"), ("utf-8", b"")])
def test_a_manifest_with_a_byte_order_mark_reads_its_header_as_a_header(images, encoding, bom):
    m = _bom_manifest(images, images[0].parents[1] / f"bom-{encoding}-{len(bom)}.csv", encoding, bom)
    ds = manifest_dataset(m, [str(i) for i in range(10)], allow_empty=True)
    assert [s.path for s in ds.samples] == [str(p) for p in images]
    assert [s.label for s in ds.samples] == [int(p.parent.name) for p in images]


def test_an_excel_csv_utf8_manifest_scans(images, tmp_path):
    m = _bom_manifest(images, images[0].parents[1] / "excel.csv", "utf-8", b"\xef\xbb\xbf")
    assert _scan(m, tmp_path / "run").computed == N_GOOD


def test_train_reads_an_excel_csv_utf8_manifest_as_scan_does(images):
    m = _bom_manifest(images, images[0].parents[1] / "excel-train.csv", "utf-8", b"\xef\xbb\xbf")
    ds = load_dataset(m)  # what `mikata train` reads (training.loop.train -> load_dataset)
    assert ds.classes == sorted({p.parent.name for p in images}) and len(ds) == N_GOOD


def test_an_excel_csv_with_fields_keeps_its_field_names(images):
    base = images[0].parents[1]
    m = base / "fields.csv"
    text = "path,label,stain\n" + "\n".join(f"{r},H&E" for r in _rows(images, base)) + "\n"
    m.write_bytes(b"\xef\xbb\xbf" + text.encode())
    ds = manifest_dataset(m, [str(i) for i in range(10)], allow_empty=True)
    assert ds.fields == ["stain"] and ds.samples[0].fields == (("stain", "H&E"),)


def test_a_latin1_manifest_is_refused_naming_the_line(images):
    base = images[0].parents[1]
    m = base / "latin1.csv"
    m.write_bytes(("path,label,site\n" + _rows(images, base)[0] + ",Zürich\n").encode("latin-1"))
    with pytest.raises(DatasetError, match=r"line 2 is not UTF-8 \(byte 0xfc\).*CSV UTF-8"):
        manifest_dataset(m)


def test_a_utf16_manifest_without_a_bom_is_refused(images):
    base = images[0].parents[1]
    m = base / "utf16-nobom.csv"
    m.write_bytes(("path,label\n" + "\n".join(_rows(images, base))).encode("utf-16-le"))
    with pytest.raises(DatasetError, match="line 1 holds NUL bytes"):
        manifest_dataset(m)


def test_a_200_kb_field_is_refused_naming_the_line(images):
    base = images[0].parents[1]
    m = base / "long.csv"
    m.write_text("path,label,note\n" + _rows(images, base)[0] + ",ok\n" + _rows(images, base)[1] + ","
                 + "x" * 200_000 + "\n")
    with pytest.raises(DatasetError, match=r"line 3: field larger than field limit"):
        manifest_dataset(m)


def test_a_100_kb_field_is_read_whole(images):
    base = images[0].parents[1]
    m = base / "longish.csv"
    m.write_text("path,label,note\n" + _rows(images, base)[0] + "," + "y" * 100_000 + "\n")
    ds = manifest_dataset(m, [str(i) for i in range(10)], allow_empty=True)
    assert ds.samples[0].fields == (("note", "y" * 100_000),)


def test_a_200_kb_path_is_a_skip_not_a_traceback(images, tmp_path):
    base = images[0].parents[1]
    m = base / "longpath.csv"
    m.write_text("path,label\n" + "\n".join(_rows(images, base)) + "\n" + "a" * 100_000 + ".png,0\n")
    s = _scan(m, tmp_path / "run")
    assert s.computed == N_GOOD and s.skipped == 1
    assert "name too long" in s.skipped_files[0][1].lower()


# ---------------------------------------------------------------------------------- containment
@pytest.fixture(scope="module")
def outside_run(tmp_path_factory):
    """A manifest in one folder listing images (by absolute path) that live in two other folders."""
    base = tmp_path_factory.mktemp("outside")
    a = _digits(base / "photos_a", 3)
    from test_scan_support import digit_images

    imgs, labels = digit_images(6)
    b = []
    for i in range(3, 6):
        p = base / "photos_b" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        imgs[i].save(p)
        b.append((p, labels[i]))
    (base / "lists").mkdir()
    m = base / "lists" / "m.csv"
    m.write_text("path,label\n" + "\n".join([f"{p},{p.parent.name}" for p in a] + [f"{p},{y}" for p, y in b]) + "\n")
    _scan(m, base / "run")
    return base


def test_absolute_paths_outside_the_csv_folder_become_data_roots(outside_run):
    m = json.loads((outside_run / "run" / "manifest.json").read_text())
    roots = m["data_roots"]
    assert os.path.realpath(outside_run / "photos_b") in roots
    assert all(os.path.realpath(outside_run / "photos_a") in r or r.startswith(os.path.realpath(outside_run / "photos_a"))
               for r in roots if "photos_a" in r)
    assert len(roots) >= 2


def test_images_outside_the_csv_folder_are_served(outside_run):
    with RunStore.open(outside_run / "run") as store:
        ids = store.ids()
        assert len(image_files(store, ids)) == 6
        assert image_file(store, ids[-1]).parent.name == "photos_b"


def test_the_report_shows_thumbnails_of_images_outside_the_csv_folder(outside_run, tmp_path):
    from mikata.report import write_report

    res = write_report(outside_run / "run", tmp_path / "r.html", maps=False)
    assert res.thumbnails == 6
    assert not any("moved or deleted" in n for n in res.notes)


def _copy_run(src: Path, dst: Path, **manifest) -> Path:
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m.update(manifest)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


@pytest.mark.parametrize("roots", [["/"], ["/tmp"], ["/home"], ["/etc"], ["/usr"], [os.path.expanduser("~")],
                                   ["/proc/self/cwd"], ["/nonexistent/folder"], []])
def test_a_root_read_from_a_manifest_serves_nothing_unless_it_may(outside_run, tmp_path, roots):
    run = _copy_run(outside_run / "run", tmp_path / "run", dataset_root="/", data_roots=roots)
    with RunStore.open(run) as store:
        ids = store.ids()
        with pytest.raises(UnknownImageError, match="outside the dataset's folders"):
            image_file(store, ids[0])
        assert image_files(store, ids) == {}


def test_a_format_1_run_with_a_root_of_slash_serves_nothing(outside_run, tmp_path):
    run = _copy_run(outside_run / "run", tmp_path / "run", dataset_root="/", format="mikata-run/1")
    m = json.loads((run / "manifest.json").read_text())
    m.pop("data_roots")
    (run / "manifest.json").write_text(json.dumps(m))
    with RunStore.open(run) as store:
        assert store.manifest["data_roots"] == ["/"]
        assert image_files(store, store.ids()) == {}


def test_the_app_does_not_serve_a_file_outside_the_data_under_a_root_of_slash(outside_run, tmp_path):
    from fastapi.testclient import TestClient
    from PIL import Image
    from test_scan_support import mnist_handle

    from mikata.server import create_app

    secret = tmp_path / "private" / "me.png"
    secret.parent.mkdir()
    Image.fromarray(np.full((28, 28), 77, np.uint8)).save(secret)
    run = _copy_run(outside_run / "run", tmp_path / "run", dataset_root="/", data_roots=["/"])
    con = sqlite3.connect(run / "run.sqlite")
    with con:
        con.execute("UPDATE images SET path=? WHERE id=1", (str(secret),))
    con.close()
    token = "t" * 48
    c = TestClient(create_app(run, token=token, port=8765, handle=mnist_handle()), base_url="http://127.0.0.1:8765")
    assert c.get(f"/?token={token}").status_code == 200
    for route in ("/img/1", "/thumb/1", "/view/1.png", "/image/1"):
        assert c.get(route).status_code == 404, route


def test_a_tampered_row_outside_honest_roots_is_not_served(outside_run, tmp_path):
    from PIL import Image

    secret = tmp_path / "private" / "me.png"
    secret.parent.mkdir()
    Image.fromarray(np.full((28, 28), 77, np.uint8)).save(secret)
    run = _copy_run(outside_run / "run", tmp_path / "run")
    con = sqlite3.connect(run / "run.sqlite")
    with con:
        con.execute("UPDATE images SET path=? WHERE id=1", (str(secret),))
    con.close()
    with RunStore.open(run) as store:
        with pytest.raises(UnknownImageError):
            image_file(store, 1)


def test_a_merge_of_shards_from_two_folders_keeps_both_roots_not_their_ancestor(tmp_path):
    from mikata.runs.merge import merge_runs

    a = _digits(tmp_path / "a" / "data", 4)
    b = _digits(tmp_path / "b" / "data", 4)
    _scan(tmp_path / "a" / "data", tmp_path / "ra")
    _scan(tmp_path / "b" / "data", tmp_path / "rb")
    merge_runs(tmp_path / "merged", [tmp_path / "ra", tmp_path / "rb"])
    m = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    assert sorted(m["data_roots"]) == sorted(os.path.realpath(p) for p in (tmp_path / "a" / "data",
                                                                            tmp_path / "b" / "data"))
    assert m["dataset_root"] == os.path.realpath(tmp_path)
    with RunStore.open(tmp_path / "merged") as store:
        assert len(image_files(store, store.ids())) == 8
    assert a and b


# ---------------------------------------------------------------------------------- the rule itself
@pytest.mark.parametrize("root, ok", [
    ("/", False), ("/home", False), ("/tmp", False), ("/usr", False), ("/usr/share", False), ("/var", False),
    ("/mnt", False), ("/etc", False), ("/etc/ssl", False), ("/proc", False), ("/dev", False), ("/root", False),
    ("/usr/lib", False), ("/var/lib", False), (None, False), ("", False), (42, False),
])
def test_servable_root_refuses_broad_and_system_folders(root, ok):
    assert (servable_root(root) is not None) == ok


def test_servable_root_accepts_a_data_folder_and_refuses_home_and_above(tmp_path, monkeypatch):
    (tmp_path / "home" / "me" / "pictures").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home" / "me"))
    assert servable_root(tmp_path / "home" / "me" / "pictures") == os.path.realpath(tmp_path / "home" / "me" / "pictures")
    assert servable_root(tmp_path / "home" / "me") is None
    assert servable_root(tmp_path / "home") is None
    assert servable_root(tmp_path / "home" / "me" / "missing") is None


def test_a_linked_root_resolves_first(tmp_path):
    (tmp_path / "to-etc").symlink_to("/etc")
    assert servable_root(tmp_path / "to-etc") is None
    assert system_folder(tmp_path / "to-etc" / "passwd") == "/etc"


def test_a_link_inside_the_data_pointing_out_is_not_served(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (data / "a.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(Exception, match="outside the dataset's folders"):
        file_inside(data / "a.png", [str(data)])


def test_data_roots_of_a_folder_dataset_is_its_folder(tmp_path):
    (tmp_path / "d" / "cat").mkdir(parents=True)
    assert data_roots(tmp_path / "d", [str(tmp_path / "d" / "cat" / "1.png")]) == [os.path.realpath(tmp_path / "d")]


def test_data_roots_leave_out_system_folders(tmp_path):
    (tmp_path / "d").mkdir()
    assert data_roots(tmp_path / "d", ["/etc/passwd", "/dev/zero", str(tmp_path / "d" / "x.png")]) == \
        [os.path.realpath(tmp_path / "d")]


def test_data_roots_of_a_csv_in_a_broad_folder_are_its_images_folders(tmp_path):
    (tmp_path / "p").mkdir()
    assert data_roots("/tmp", [str(tmp_path / "p" / "1.png")]) == [os.path.realpath(tmp_path / "p")]


# ---------------------------------------------------------------------------------- the widened zoo
SPEC = "test_scan_support:mnist_handle"


def test_the_scan_command_exits_1_naming_each_special_file(tmp_path, capsys):
    _digits(tmp_path / "data", 4)
    _special_files(tmp_path / "data" / "0")
    code = main(["scan", SPEC, str(tmp_path / "data"), "--run", str(tmp_path / "run"), "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 1
    for name in ("fifo.png", "zero.png", "urandom.png", "sparse.png", "empty.png"):
        assert name in err, name


@pytest.mark.parametrize("command", ["scan", "train"])
def test_scan_and_train_refuse_a_latin1_manifest_in_one_line(images, tmp_path, capsys, command):
    base = images[0].parents[1]
    m = base / f"latin1-{command}.csv"
    m.write_bytes(("path,label,site\n" + "\n".join(f"{r},Zürich" for r in _rows(images, base)) + "\n")
                  .encode("latin-1"))
    argv = (["scan", SPEC, str(m), "--run", str(tmp_path / "run")] if command == "scan" else
            ["train", str(m), "--model", SPEC, "--out", str(tmp_path / "m.safetensors"), "--epochs", "1"])
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not UTF-8" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_a_crlf_manifest_with_an_upper_case_header_and_bom_reads(images):
    base = images[0].parents[1]
    m = base / "crlf.csv"
    m.write_bytes(b"\xef\xbb\xbf" + ("Path,Label\r\n" + "\r\n".join(_rows(images, base)) + "\r\n").encode())
    ds = manifest_dataset(m, [str(i) for i in range(10)], allow_empty=True)
    assert len(ds) == N_GOOD and ds.samples[0].path == str(images[0])


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\xef\xbb\xbfpath,label\r\n", b"\n\n,\n"])
def test_an_empty_manifest_says_it_has_no_images(tmp_path, content):
    m = tmp_path / "m.csv"
    m.write_bytes(content)
    with pytest.raises(DatasetError, match="has no image files"):
        manifest_dataset(m)


def test_a_manifest_over_the_size_limit_is_refused(images, monkeypatch):
    import mikata.data.datasets as datasets

    base = images[0].parents[1]
    m = _bom_manifest(images, base / "big.csv", "utf-8")
    monkeypatch.setattr(datasets, "MAX_MANIFEST_BYTES", 10)
    with pytest.raises(DatasetError, match="over the 1 GiB a manifest may have"):
        manifest_dataset(m)


def test_a_manifest_that_is_a_directory_is_refused(tmp_path):
    (tmp_path / "m.csv").mkdir()
    with pytest.raises(DatasetError, match="not a regular file"):
        manifest_dataset(tmp_path / "m.csv")


def test_a_file_at_exactly_the_limit_is_read(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"z" * 1000)
    assert file_digest(p, max_bytes=1000)[1] == 1000


def test_a_manifest_row_naming_its_own_folder_is_a_skip(images, tmp_path):
    base = images[0].parents[1]
    m = base / "dot.csv"
    m.write_text("path,label\n" + "\n".join(_rows(images, base)) + "\n.,0\n")
    s = _scan(m, tmp_path / "run")
    assert s.computed == N_GOOD and s.skipped == 1 and "a directory" in s.skipped_files[0][1]


def test_a_file_listed_under_a_link_and_its_own_name_is_one_sample(images, tmp_path):
    base = images[0].parents[1]
    alias = base / "alias.png"
    if not alias.exists():
        alias.symlink_to(images[0])
    m = base / "alias.csv"
    m.write_text(f"path,label\n{images[0]},{images[0].parent.name}\nalias.png,{images[0].parent.name}\n")
    ds = manifest_dataset(m, [str(i) for i in range(10)], allow_empty=True)
    assert [s.path for s in ds.samples] == [str(images[0])]


def test_check_hashes_calls_a_sparse_5gb_replacement_changed_quickly(zoo, tmp_path):
    import time

    from mikata.runs.integrity import check_run

    run = tmp_path / "run"
    shutil.copytree(zoo["base"] / "run", run)
    data = tmp_path / "data"
    shutil.copytree(zoo["base"] / "data", data, symlinks=True, ignore=shutil.ignore_patterns("fifo.png", "sparse.png"))
    con = sqlite3.connect(run / "run.sqlite")
    paths = [p for (p,) in con.execute("SELECT path FROM images WHERE status='ok' ORDER BY id")]
    with con:
        for p in paths:
            con.execute("UPDATE images SET path=? WHERE path=?", (str(data / Path(p).relative_to(zoo["base"] / "data")), p))
    con.close()
    target = data / Path(paths[0]).relative_to(zoo["base"] / "data")
    target.unlink()
    with open(target, "wb") as f:
        f.truncate(5 * 2**30)
    t0 = time.perf_counter()
    report = check_run(run, hashes=True)
    assert time.perf_counter() - t0 < 30  # refused by size, never read
    assert any(p.what.startswith("1 image files changed") for p in report.problems)


def test_an_image_replaced_by_a_link_to_etc_is_not_served(outside_run, tmp_path):
    run = _copy_run(outside_run / "run", tmp_path / "run")
    with RunStore.open(run) as store:
        first = image_file(store, 1)
    data = tmp_path / "d"
    shutil.copytree(first.parent, data)
    con = sqlite3.connect(run / "run.sqlite")
    with con:
        con.execute("UPDATE images SET path=? WHERE id=1", (str(data / first.name),))
    con.close()
    m = json.loads((run / "manifest.json").read_text())
    m["data_roots"] = [str(data)]
    (run / "manifest.json").write_text(json.dumps(m))
    (data / first.name).unlink()
    (data / first.name).symlink_to("/etc/hostname")
    with RunStore.open(run) as store:
        with pytest.raises(UnknownImageError, match="outside the dataset's folders"):
            image_file(store, 1)


def test_the_app_serves_image_pages_of_images_outside_the_csv_folder(outside_run):
    from fastapi.testclient import TestClient
    from test_scan_support import mnist_handle

    from mikata.server import create_app

    token = "t" * 48
    c = TestClient(create_app(outside_run / "run", token=token, port=8765, handle=mnist_handle()),
                   base_url="http://127.0.0.1:8765")
    assert c.get(f"/?token={token}").status_code == 200
    for i in range(1, 7):
        for route in (f"/img/{i}", f"/thumb/{i}", f"/image/{i}"):
            assert c.get(route).status_code == 200, route
