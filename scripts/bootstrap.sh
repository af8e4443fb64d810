#!/usr/bin/env bash
# Create .venv (once) and install rnnzoo with its test, forecast and bench extras, torch pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.rnnzoo-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test,forecast,bench]'
    touch "$stamp"
fi
