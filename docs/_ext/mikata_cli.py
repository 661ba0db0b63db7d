"""``.. mikata-cli::``: the command-line reference, generated from mikata's own argparse parsers.

Every command gets a section with its description, usage line, example, and one entry per argument
(flags, metavar, choices, default, help), so the page cannot drift from ``mikata COMMAND --help``.
"""

from __future__ import annotations

import argparse

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subcommands on its one _SubParsersAction
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _literal(text: str) -> str:
    return "``" + text.replace("`", "'") + "``" if text else ""


def _plain(text: str) -> str:
    """Help text as reStructuredText: backquoted words become literals, stray markup characters stay text."""
    out = []
    for i, part in enumerate(text.split("`")):
        if i % 2:
            out.append(_literal(part))
        else:
            out.append(part.replace("*", r"\*").replace("|", r"\|").replace("_ ", r"\_ "))
    return " ".join("".join(out).split())


def _argument(action: argparse.Action) -> list[str]:
    if action.help == argparse.SUPPRESS:
        return []
    if action.option_strings:
        name = ", ".join(action.option_strings)
        if action.nargs != 0:
            name += " " + (action.metavar or action.dest.upper() if not action.choices else
                           "{" + ",".join(map(str, action.choices)) + "}")
    else:
        name = action.metavar or action.dest
    help_text = _plain((action.help or "") % {"default": action.default} if action.help else "")
    extra = []
    if action.choices and not action.option_strings:
        extra.append("one of " + ", ".join(_literal(str(c)) for c in action.choices))
    if action.default not in (None, False, argparse.SUPPRESS) and action.nargs != 0 and "default" not in help_text:
        extra.append("default " + _literal(str(action.default)))
    if action.required and action.option_strings:
        extra.append("required")
    tail = f" ({'; '.join(extra)})" if extra else ""
    return [_literal(name), "   " + (help_text or "(no description)") + tail, ""]


def command_rst(name: str, parser: argparse.ArgumentParser) -> list[str]:
    title = f"mikata {name}"
    lines = [title, "-" * len(title), "", _plain(parser.description or ""), "", ".. code-block:: text", ""]
    lines += ["   " + line for line in parser.format_usage().strip().splitlines()] + [""]
    example = (parser.epilog or "").split("\n\n", 1)[0]
    if example.startswith("example:"):
        lines += ["Example:", "", ".. code-block:: bash", ""]
        lines += ["   " + line.strip() for line in example.splitlines()[1:] if line.strip()] + [""]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        lines += _argument(action)
    return lines


class MikataCli(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from mikata.cli import build_parser

        parser = build_parser()
        lines: list[str] = [_plain(parser.description or ""), "", "Options of every command:", ""]
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                lines += _argument(action)
        for name, sub in _subcommands(parser).items():
            lines += [""] + command_rst(name, sub)
        container = nodes.section()
        self.state.nested_parse(StringList(lines, source="mikata-cli"), self.content_offset, container,
                                match_titles=True)
        return list(container.children)


def setup(app):
    app.add_directive("mikata-cli", MikataCli)
    return {"parallel_read_safe": True, "version": "1"}
