#!/usr/bin/env bash
# Install what the tests need (torch pinned in the same pip command), lint and type-check src/, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh --browser
python3 -m pip install -q -c constraints.txt -e ".[test]"
python3 -m ruff check src            # lint at the strictness in pyproject.toml [tool.ruff]
python3 -m mypy                      # types at the strictness in pyproject.toml [tool.mypy]
python3 -m pytest -q "$@"
