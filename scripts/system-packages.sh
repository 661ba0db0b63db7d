#!/usr/bin/env bash
# Debian packages mikata's demo and tests use: real labeled data (Fashion-MNIST) and, with --browser,
# the Chromium that the end-to-end tests drive through Playwright (never a browser download). Needs root.
set -uo pipefail
need=()
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
if [ "${1:-}" = "--browser" ]; then
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; else SUDO=; fi
{ $SUDO apt-get update -q && $SUDO apt-get install -y -q "${need[@]}"; } >/dev/null 2>&1 \
  || echo "warning: could not install ${need[*]} (apt-get install ${need[*]}); steps that need it will say so" >&2
