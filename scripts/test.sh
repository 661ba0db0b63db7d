#!/usr/bin/env bash
# Install what the tests need (torch pinned in the same pip command) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh --browser
python3 -m pip install -q -c constraints.txt -e ".[test]"
python3 -m pytest -q "$@"
