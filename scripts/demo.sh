#!/usr/bin/env bash
# Install what the main job needs (torch pinned in the same pip command) and run `mikata demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
python3 -m pip install -q -c constraints.txt -e .
mikata demo "$@"
