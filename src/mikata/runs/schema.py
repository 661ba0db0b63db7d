"""A small hand-written schema check for the JSON files and PNG text chunks a run directory holds.

Attachments (``evaluate/scorecard.json``, ``units/units.json``, the feature-visualization PNGs' text
chunks) are data read from files anyone may have edited. Each reader checks the value against a
schema before using it: a bad one is refused as a whole with one ``SchemaError`` naming the file,
the place inside it (``table.gradcam.insertion-auc``) and what was expected, and the report and the
app leave that section out with a note instead of failing every page.

A schema is plain data:
- a type name: ``"str"``, ``"int"``, ``"number"`` (finite int or float), ``"bool"``, ``"any"``
  (any JSON of bounded depth);
- ``Opt(schema)``: the schema or null;
- ``[schema]``: a list of such items; ``{"key": schema, ...}``: an object with at most these keys
  (extra keys pass unchecked unless ``strict``), ``Req`` marks required keys;
- ``MapOf(schema)``: an object with string keys and values of that schema.

Depth is checked on the text before ``json.loads`` parses it (CPython's parser recurses: 10,000
nested brackets are a RecursionError), and size before reading.

Example:
    >>> check_value({"a": [1, 2.5]}, {"a": ["number"]}, "x.json")
    {'a': [1, 2.5]}
    >>> check_value({"a": ["1"]}, {"a": ["number"]}, "x.json")
    Traceback (most recent call last):
    ...
    mikata.runs.schema.SchemaError: x.json: a[0]: expected a number, found a string
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mikata.errors import MikataError

MAX_DEPTH = 20          # nesting of any attachment (the scorecard needs 4)
MAX_BYTES = 20 << 20    # 20 MB: a scorecard of 100 methods is ~50 kB


class SchemaError(MikataError, ValueError):
    """An attachment whose content is not what its schema says; the message names the file and the place."""


@dataclass(frozen=True)
class Opt:
    schema: object


@dataclass(frozen=True)
class Req:
    schema: object


@dataclass(frozen=True)
class MapOf:
    schema: object


_NAMES = {"str": "a string", "int": "an integer", "number": "a number", "bool": "true or false", "list": "a list",
          "dict": "an object", "NoneType": "null", "float": "a number"}


def _found(value: object) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return _NAMES.get(type(value).__name__, type(value).__name__)


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """The deepest nesting of brackets and braces in JSON text (brackets inside strings do not count).

    Example:
        >>> json_depth('{"a": [[1], "]]]"]}'), json_depth("[" * 50 + "]" * 50)
        (3, 50)
    """
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(text: str, where: str, max_depth: int = MAX_DEPTH) -> object:
    """``json.loads`` of ``text`` after checking its nesting; NaN and Infinity are refused (not JSON)."""
    depth = json_depth(text)
    if depth > max_depth:
        raise SchemaError(f"{where}: nested {depth} levels deep (at most {max_depth} expected)")

    def no_constants(name: str) -> object:
        raise ValueError(f"{name} is not a JSON value")

    try:
        return json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError) as e:
        raise SchemaError(f"{where}: not valid JSON ({str(e)[:120]})") from None


def read_json(path: str | os.PathLike, schema: object, max_bytes: int = MAX_BYTES) -> object:
    """The JSON file ``path`` parsed and checked against ``schema``; ``SchemaError`` otherwise."""
    path = Path(path)
    where = path.name
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SchemaError(f"{where}: {size:,} bytes, larger than the {max_bytes:,} an attachment may have")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SchemaError(f"{where}: not UTF-8 text") from None
    except OSError as e:
        raise SchemaError(f"{where}: cannot be read ({e.strerror or e})") from None
    return check_value(parse_json(text, where), schema, where)


def check_value(value: object, schema: object, where: str, at: str = "") -> object:
    """``value`` when it matches ``schema`` (see the module doc); ``SchemaError`` naming the place otherwise."""
    here = at or "the top level"

    def fail(expected: str) -> SchemaError:
        return SchemaError(f"{where}: {here}: expected {expected}, found {_found(value)}")

    if isinstance(schema, Opt):
        return None if value is None else check_value(value, schema.schema, where, at)
    if schema == "any":
        return value
    if schema == "str":
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if schema == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if schema == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if schema == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail("a number")
        return value
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise fail("a list")
        for i, item in enumerate(value):
            check_value(item, schema[0], where, f"{at}[{i}]")
        return value
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            raise fail("an object")
        for k, v in value.items():
            check_value(v, schema.schema, where, f"{at}.{k}" if at else str(k))
        return value
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise fail("an object")
        for key, sub in schema.items():
            required = isinstance(sub, Req)
            if key not in value:
                if required:
                    raise SchemaError(f"{where}: {here}: the field {key!r} is missing")
                continue
            check_value(value[key], sub.schema if required else sub, where, f"{at}.{key}" if at else key)
        return value
    raise TypeError(f"not a schema: {schema!r}")
