"""Issue 34: SIGINT and SIGTERM during `mikata train` keep the last finished epoch, exit 130 / 143 with one
line saying how to resume, and `--resume` then ends exactly where an uninterrupted run ends. Real
subprocesses, real signals; what is resumed afterwards (a run of files on disk) resumes in the test process."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from cli_support import run_cli
from hostile_support import cli_env, mikata_cmd
from mikata.errors import Interrupted, interrupt_on_signals, signals_deferred

# test_train.TWO_EPOCHS as command-line options: conftest's ``digits_trained_2_epochs`` is their uninterrupted run
OPTIONS = ["--model", "efficientnet-lite0", "--epochs", "2", "--batch-size", "16", "--input-size", "32",
           "--freeze-until", "blocks.11", "--threads", "1", "--workers", "1"]


@pytest.fixture(scope="module")
def digits(digits_trained_2_epochs) -> Path:
    """scikit-learn's real handwritten digits, 4 classes x 40, as PNG class folders (shared: read only)."""
    return digits_trained_2_epochs["digits"]


def _train(data: Path, out: Path, *extra: str, preexec=None, verbose: bool = False) -> subprocess.Popen:
    cmd = mikata_cmd("train", str(data), "--out", str(out), *OPTIONS, *extra)
    if verbose:
        cmd.remove("-q")
    return subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)


def _signal_after(proc: subprocess.Popen, marker: str, signum: int, delay: float = 0.0) -> tuple[int, str]:
    """Send ``signum`` once ``marker`` appears on stderr (after ``delay`` s); the exit code and all stderr."""
    lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if marker in line:
            time.sleep(delay)
            proc.send_signal(signum)
            break
    _, rest = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + rest


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _history(path: Path) -> dict:
    from mikata.models.loading import read_checkpoint_metadata

    return read_checkpoint_metadata(path)["training"]["history"]


@pytest.fixture(scope="module")
def uninterrupted(digits_trained_2_epochs) -> Path:
    """The same options run to the end without a signal (built in-process once per session)."""
    return digits_trained_2_epochs["full"]


@pytest.fixture(scope="module")
def after_first_epoch(digits, tmp_path_factory):
    """``get(signum)``: (checkpoint, exit code, stderr) of a `mikata train` process sent ``signum`` once it said
    "epoch 1/2:", run once per signal for this module (tests copy the files before changing them)."""
    runs: dict[int, tuple[Path, int, str]] = {}

    def get(signum: int) -> tuple[Path, int, str]:
        if signum not in runs:
            out = tmp_path_factory.mktemp(f"sig{signum}") / "m.safetensors"
            rc, err = _signal_after(_train(digits, out, verbose=True), "epoch 1/2:", signum)
            runs[signum] = out, rc, err
        return runs[signum]

    return get


def _copied(out: Path, folder: Path) -> Path:
    """The interrupted run's checkpoint and its resume sidecar copied into ``folder``; the copy's checkpoint."""
    import shutil

    from mikata.training import state_path

    copy = folder / out.name
    shutil.copy2(out, copy)
    shutil.copy2(state_path(out), state_path(copy))
    return copy


def _resume(capsys, digits: Path, out: Path):
    """``mikata -q train ... --resume`` in this process (what is resumed is files, not the killed process)."""
    return run_cli(capsys, "-q", "train", str(digits), "--out", str(out), *OPTIONS, "--resume")


def _assert_same_model(resumed: Path, full: Path) -> None:
    a, b = _weights(resumed), _weights(full)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    ha, hb = _history(resumed), _history(full)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert ha[key] == pytest.approx(hb[key], rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_after_the_first_epoch_keeps_it_and_resume_matches_an_uninterrupted_run(
        digits, tmp_path, uninterrupted, after_first_epoch, capsys, signum, code):
    from mikata.training import state_path

    out, rc, err = after_first_epoch(signum)
    assert rc == code, err
    last = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert last == (f"mikata train: interrupted by {name}: 1 of 2 epoch(s) done and saved in {out} "
                    f"(+ m.safetensors.state.pt); continue with the same command and --resume"), err
    assert "Traceback" not in err
    assert torch.load(state_path(out), weights_only=True)["epoch"] == 1
    out = _copied(out, tmp_path)
    resumed = _resume(capsys, digits, out)
    assert resumed.returncode == 0, resumed.stderr
    assert not state_path(out).exists()
    _assert_same_model(out, uninterrupted)


def test_a_signal_in_the_first_epoch_keeps_the_start_and_resume_runs_every_epoch(digits, tmp_path, uninterrupted,
                                                                                  capsys):
    from mikata.training import state_path

    out = tmp_path / "m.safetensors"
    # the untrained start is written just before epoch 1 begins (which takes ~1.5 s): signal once it is there
    proc = _train(digits, out, verbose=True)
    deadline = time.monotonic() + 300
    while not state_path(out).is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    rc = proc.returncode
    assert rc == 143, err
    assert "interrupted by SIGTERM: 0 of 2 epoch(s) done and saved in" in err.strip().splitlines()[-1]
    assert torch.load(state_path(out), weights_only=True)["epoch"] == 0
    resumed = _resume(capsys, digits, out)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_model(out, uninterrupted)


def test_sigint_stops_a_job_started_with_sigint_ignored(digits, tmp_path):
    """`mikata train ... &` in a shell script starts with SIGINT ignored; `kill -INT` must still stop it."""
    from mikata.training import state_path

    out = tmp_path / "m.safetensors"
    proc = _train(digits, out, verbose=True, preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    rc, err = _signal_after(proc, "epoch 1/2:", signal.SIGINT)
    assert rc == 130, err
    assert "interrupted by SIGINT: 1 of 2 epoch(s) done" in err
    assert state_path(out).is_file()


def test_a_signal_before_training_starts_says_nothing_was_saved(digits, tmp_path):
    out = tmp_path / "m.safetensors"
    proc = _train(digits, out, verbose=True)
    rc, err = _signal_after(proc, "preprocessing:", signal.SIGTERM)
    assert rc == 143, err
    assert err.strip().splitlines()[-1] in (
        "mikata train: interrupted by SIGTERM: nothing was saved yet; run the same command again",
        # the signal may land after the start was written
        f"mikata train: interrupted by SIGTERM: 0 of 2 epoch(s) done and saved in {out} (+ m.safetensors.state.pt); "
        "continue with the same command and --resume")


def test_resume_refuses_weights_and_state_from_different_epochs(digits, tmp_path, after_first_epoch, capsys):
    """A kill -9 between the two file replacements: the weights are newer than the state."""
    from mikata.training import state_path

    out, rc, err = after_first_epoch(signal.SIGTERM)
    assert rc == 143, err
    out = _copied(out, tmp_path)
    state = torch.load(state_path(out), weights_only=True)
    state["epoch"] = 2
    torch.save(state, state_path(out))
    resumed = _resume(capsys, digits, out)
    assert resumed.returncode == 2
    assert resumed.stderr.strip() == (f"mikata train: error: cannot resume {out}: its weights are from epoch 1 but "
                                      "m.safetensors.state.pt is from epoch 2 (the run was killed while saving); "
                                      "run without --resume to start over")


# ------------------------------------------------------------------ the signal helpers themselves
def test_interrupted_carries_the_shell_exit_code():
    assert Interrupted(signal.SIGINT).exit_code == 130 and Interrupted(signal.SIGTERM).exit_code == 143
    assert Interrupted(signal.SIGTERM).signal_name == "SIGTERM"
    assert isinstance(Interrupted(signal.SIGINT), KeyboardInterrupt)  # every `except KeyboardInterrupt` still sees it


def test_a_signal_inside_a_deferred_block_is_raised_when_it_ends():
    import os

    steps = []
    with interrupt_on_signals():
        with pytest.raises(Interrupted) as e:
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                steps.append("write finished")  # the write was not cut short
        assert e.value.exit_code == 143
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert steps == ["write finished"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_crossval_interrupted_says_rerun(digits, tmp_path, capsys):
    run = tmp_path / "cv"
    cmd = mikata_cmd("crossval", str(digits), "--run", str(run), "--folds", "2", *OPTIONS)
    cmd.remove("-q")
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rc, err = _signal_after(proc, "epoch 1/2:", signal.SIGTERM)
    assert rc == 143, err
    assert err.strip().splitlines()[-1] == (
        f"mikata crossval: interrupted by SIGTERM: finished folds and the last finished epoch of the current one "
        f"are kept in {tmp_path / 'cv.folds'}; run the same command again to continue")
    again = run_cli(capsys, *cmd[3:])  # the same command, in this process
    assert again.returncode == 0, again.stderr
    assert "resuming training" in again.stderr
