"""Issue 30 point 4: the edges of big scans and exports are refused in one line, early.

A Ray address that does not answer is refused in a few seconds (exit 2) before the model loads and
before the run directory exists, and Ctrl-C ends the wait; ``--shard`` is checked (and its
numbering from 0 said in ``--help``) before the model loads; ``export`` refuses a ``--format`` that
contradicts the ``--out`` suffix, and without ``--format`` the suffix decides.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hostile_support import cli_env, mikata_cmd, small_run
from mikata.cli import main


def _no_model_load(monkeypatch) -> None:
    def refuse(args):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr("mikata.cli.scan.load_model_from_args", refuse)


def _data(tmp_path: Path) -> Path:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    return tmp_path / "data"


@pytest.fixture
def listener():
    """A TCP port that accepts connections but is no Ray head node (and never answers)."""
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen(8)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("shard", ["2/2", "4/4", "-1/3", "1/0", "x/3", "1-3"])
def test_a_shard_out_of_range_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys, shard):
    _no_model_load(monkeypatch)
    code = main(["scan", "efficientnet-lite0", str(_data(tmp_path)), "--run", str(tmp_path / "run"), f"--shard={shard}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"--shard {shard!r}" in err, err
    assert not (tmp_path / "run").exists()
    if shard == "2/2":
        assert "counted from 0" in err and "the last of 2 shards is 1/2" in err


def test_scan_help_says_shards_count_from_zero(capsys):
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "counted from 0" in text and "0/4, 1/4, 2/4 and 3/4" in text


def test_a_ray_address_where_nothing_listens_is_refused_at_once_before_the_model_and_the_run(
        tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    _no_model_load(monkeypatch)
    t0 = time.perf_counter()
    code = main(["scan", "efficientnet-lite0", str(_data(tmp_path)), "--run", str(tmp_path / "run"),
                 "--engine", "ray", "--address", f"127.0.0.1:{_closed_port()}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot join the Ray cluster" in err, err
    assert "nothing answers" in err and "--address" in err
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "run").exists()


def test_a_ray_address_that_is_no_head_node_is_refused_in_seconds_with_one_line(tmp_path, listener):
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    t0 = time.perf_counter()
    out = subprocess.run(mikata_cmd("scan", "efficientnet-lite0", str(_data(tmp_path)), "--run", str(tmp_path / "run"),
                                    "--engine", "ray", "--address", f"127.0.0.1:{listener}"),
                         env=cli_env(), capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - t0
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a Ray head node" in lines[0], out.stderr
    assert "Failed to connect to GCS" not in out.stderr
    assert seconds < 45  # Ray's own connect retried for over 10 minutes; the probe takes ~2 s (+ imports)
    assert not (tmp_path / "run").exists()


def test_ctrl_c_ends_the_wait_for_a_ray_address(tmp_path, listener):
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    proc = subprocess.Popen(mikata_cmd("scan", "efficientnet-lite0", str(_data(tmp_path)), "--run",
                                       str(tmp_path / "run"), "--engine", "ray", "--address", f"127.0.0.1:{listener}"),
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # interrupt once the probe is waiting on the port (imports done, connection established)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not _connected(listener):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, proc.stderr.read()
    assert not (tmp_path / "run").exists()


def _connected(port: int) -> bool:
    """Whether some process holds an established TCP connection to ``port`` (read from /proc/net/tcp)."""
    hex_port = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, remote, state = line.split()[1:4]
            if state == "01" and (remote.endswith(":" + hex_port)):
                return True
    return False


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return small_run(tmp_path_factory.mktemp("export-edges"), n=6)


def test_export_refuses_a_format_that_contradicts_the_file_suffix(run, tmp_path, capsys):
    out = tmp_path / "x.parquet"
    code = main(["export", str(run), "--format", "csv", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--format csv" in err and "x.parquet" in err and "x.csv" in err
    assert not out.exists()


@pytest.mark.parametrize("name,fmt", [("x.csv", "csv"), ("x.jsonl", "json"), ("x.parquet", "parquet")])
def test_without_format_the_suffix_decides(run, tmp_path, capsys, name, fmt):
    out = tmp_path / name
    assert main(["export", str(run), "--out", str(out)]) == 0
    head = out.read_bytes()[:4]
    if fmt == "parquet":
        assert head == b"PAR1"
    elif fmt == "csv":
        assert {"path", "label", "predicted"} <= set(out.read_text().splitlines()[0].split(","))
    else:
        assert head.startswith(b"{")


def test_a_suffix_no_format_claims_takes_the_format_given(run, tmp_path, capsys):
    out = tmp_path / "table.txt"
    assert main(["export", str(run), "--format", "csv", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 1 + 6
