#!/usr/bin/env bash
# Install what the tests need (torch pinned in the same pip command), lint and type-check src/, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh --browser
python3 -m pip install -q -c constraints.txt -e ".[test]"
python3 -m ruff check src            # lint at the strictness in pyproject.toml [tool.ruff]
python3 -m mypy                      # types at the strictness in pyproject.toml [tool.mypy]
# Bytecode for src/ once (0.5 s): where PYTHONDONTWRITEBYTECODE is set, as in this project's machines, every
# `python -m mikata` a test starts would otherwise compile the modules it imports again (~0.2 s CPU each).
python3 -m compileall -q src
# pytest-xdist: one worker per core (at most 4), each taking whole files (--dist loadfile: a file's module
# fixtures are built once) in the order tests/conftest.py gives (files with slow tests first); the 20
# slowest tests are listed at the end. Arguments are passed on (`-n 0` runs in one process).
python3 -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder --durations=20 "$@"
