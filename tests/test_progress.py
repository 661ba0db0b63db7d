"""mikata.progress: plain lines when stderr is not a terminal (no carriage returns, no escape codes,
throttled), an estimate after the first item, nested steps that do not garble, --quiet honoured."""

from __future__ import annotations

import io

import pytest

from mikata import progress as P


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def _plain(monkeypatch):
    monkeypatch.delenv(P.ENV, raising=False)
    P.set_quiet(False)
    yield
    P.set_quiet(False)


def test_not_a_terminal_gives_few_plain_lines_with_an_estimate():
    out, clock = io.StringIO(), Clock()
    bar = P.Progress(1000, "scan", "img", file=out, clock=clock, first="first batch")
    for _ in range(1000):
        clock.t += 0.05  # 50 s in all
        bar.update(1)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "scan: 1,000 img; about 50 s at 20.0 img/s (measured on the first batch)"
    assert lines[-1] == "scan: done, 1,000/1,000 img in 50 s"
    progress_lines = [ln for ln in lines[1:-1]]
    assert 5 <= len(progress_lines) <= 10  # one per 10% at most, not one per update
    assert all(ln.startswith("scan: ") and "%)" in ln and "left" in ln for ln in progress_lines)


def test_lines_are_never_closer_than_the_minimum_gap():
    out, clock = io.StringIO(), Clock()
    with P.Progress(10, "report: gradcam maps", "class", file=out, clock=clock) as bar:
        for _ in range(10):
            clock.t += 0.1  # each 10% in 0.1 s: faster than MIN_GAP_S
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert lines == ["report: gradcam maps: done, 10/10 class in 1.0 s"]  # the estimate is under ESTIMATE_MIN_S


def test_nested_steps_stay_plain_and_short_ones_stay_silent():
    out, clock = io.StringIO(), Clock()
    with P.Progress(3, "evaluate", "part", file=out, clock=clock, estimate=False) as outer:
        for name in ("gradcam", "saliency", "integrated-gradients"):
            outer.set_stage(f"{name} faithfulness")
            long = name == "integrated-gradients"
            with P.Progress(8, f"evaluate: {name} deletion/insertion curves", "batch", file=out, clock=clock) as inner:
                assert inner.depth == 1
                for _ in range(8):
                    clock.t += 5.0 if long else 0.1
                    inner.update(1)
            outer.update(1)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert "gradcam deletion" not in text and "saliency deletion" not in text  # 0.8 s each: silent
    assert "evaluate: integrated-gradients deletion/insertion curves: done, 8/8 batch in 40 s" in text
    assert text.splitlines()[-1].startswith("evaluate: done, 3/3 part in ")


def test_quiet_and_off_print_nothing(monkeypatch):
    out, clock = io.StringIO(), Clock()
    P.set_quiet(True)
    with P.Progress(4, "train", "epoch", file=out, clock=clock) as bar:
        for _ in range(4):
            clock.t += 30
            bar.update(1)
    P.note("evaluate: 3 parts reused", file=out)
    assert out.getvalue() == ""
    P.set_quiet(False)
    monkeypatch.setenv(P.ENV, "off")
    for _ in P.progress(range(3), desc="x", file=out):
        pass
    assert out.getvalue() == ""


def test_a_terminal_gets_a_named_tqdm_bar(monkeypatch):
    monkeypatch.setenv(P.ENV, "bar")
    out = io.StringIO()
    with P.Progress(4, "scan", "img", file=out) as bar:
        bar.set_stage("batch 1")
        bar.update(4)
    assert "scan: batch 1" in out.getvalue() and "4/4" in out.getvalue()


def test_the_iterator_form_counts_and_closes_when_abandoned():
    out, clock = io.StringIO(), Clock()
    it = P.progress(range(5), desc="units", unit="img", file=out)
    for i in it:
        if i == 2:
            break
    it.close()  # an abandoned generator closes its bar
    assert not P._active
    assert out.getvalue().splitlines()[-1].startswith("units: stopped at 2/5 img after ")
    out2 = io.StringIO()
    with pytest.raises(KeyboardInterrupt), P.Progress(4, "evaluate", "part", file=out2) as bar:
        bar.update(1)
        raise KeyboardInterrupt
    assert out2.getvalue().splitlines()[-1].startswith("evaluate: stopped at 1/4 part after ")
    assert P.format_seconds(754) == "13 min" and P.format_rate(1.4, "map") == "1.4 s/map"
    assert P.format_rate(0.02, "img") == "50.0 img/s"


def test_a_scan_and_the_frozen_feature_cache_name_their_work_in_plain_lines(tmp_path, capsys):
    """Real long steps through the helper: stderr captured (not a terminal) gets plain, named lines."""
    import torch

    from mikata.scanning.scan import scan
    from mikata.training.frozen_features import boundary_inputs
    from test_scan_support import digit_images, mnist_handle, write_folder

    images, labels = digit_images(24)
    write_folder(tmp_path / "digits", images, labels)
    handle = mnist_handle()
    scan(handle, tmp_path / "digits", tmp_path / "run", batch_size=8, workers=0, progress=True)
    x = torch.randn(40, 1, 28, 28)  # (N, C, H, W)
    feats = boundary_inputs(handle, "conv_layers.3", x, batch_size=8, progress=True,
                            desc="train: cache the frozen layers' output (train)")
    assert feats.shape[0] == 40
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert "scan: done, 24/24 img in " in err
    assert "train: cache the frozen layers' output (train): done, 40/40 img in " in err
