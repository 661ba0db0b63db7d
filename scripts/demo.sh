#!/usr/bin/env bash
# Install what the main job needs (torch pinned in the same pip command) and run `mikata demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  # Real labeled data for the demo's training step (Debian package; needs root or sudo).
  { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; } >/dev/null 2>&1 \
    || echo "warning: could not install dataset-fashion-mnist; the demo's training step will say what to do" >&2
fi
python3 -m pip install -q -c constraints.txt -e .
mikata demo "$@"
