"""Issue 17, class 10: one exit-status rule for every command (0 all good, 1 finished with skipped or failed
items, 2 refused / usage), stated in every command's --help."""

from __future__ import annotations

import argparse

import pytest

from mikata.cli import COMMANDS, build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_states_the_rule_in_its_help(name):
    text = _subparsers()[name].format_help()
    assert "exit status: 0 all good; 1 finished, but some items were skipped or failed" in text
    assert "2 refused" in text and "example:" in text


@pytest.mark.parametrize("argv", [["scan"], ["predict"], ["check"], ["audit", "--no-such-flag", "x"], ["nope"]])
def test_usage_errors_are_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


@pytest.mark.parametrize("argv", [["audit", "/nonexistent/run"], ["check", "/nonexistent/run"],
                                  ["predict", "no-such-model", "x.png"], ["report", "/nonexistent/run"],
                                  ["serve", "/nonexistent/run", "--port", "1"]])
def test_refusals_are_2_or_1_with_one_line(argv, capsys):
    rc = main(["-q", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == (1 if argv[0] == "check" else 2)  # check finished: it found the problem
    assert "Traceback" not in err and len(err.splitlines()) <= 1
