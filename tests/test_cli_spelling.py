"""Option spellings: `train --split-fractions` as `scan` spells it; the old `train --split` still works,
hidden from --help, with a deprecation warning."""

from __future__ import annotations

import argparse
import logging

import pytest


def _train_parser() -> argparse.ArgumentParser:
    from mikata.cli.train import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser


def test_train_split_fractions_and_its_deprecated_alias(caplog, capsys):
    parser = _train_parser()
    new = parser.parse_args(["train", "data", "--model", "m", "--out", "o", "--split-fractions", "0.5,0.5"])
    assert new.split == "0.5,0.5" and not caplog.records
    with caplog.at_level(logging.WARNING):
        old = parser.parse_args(["train", "data", "--model", "m", "--out", "o", "--split", "0.6,0.4"])
    assert old.split == "0.6,0.4"
    assert "--split is deprecated; use --split-fractions" in caplog.text
    default = parser.parse_args(["train", "data", "--model", "m", "--out", "o"])
    assert default.split == "0.7,0.15,0.15"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "--split-fractions" in help_text and "--split " not in help_text.replace("--split-fractions", "")
