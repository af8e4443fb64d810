#!/usr/bin/env bash
# Create .peers/nf, a venv of its own for the forecasting speed peer (neuralforecast), so that its dependencies
# (lightning, ray, optuna, ...) never enter .venv. torch is pinned by constraints.txt, as in bootstrap.sh, so
# both sides of benchmarks/forecast_speed.py run the same CPU build. .peers/ is git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.peers/nf
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp=$venv/.installed
if [ ! -f "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet -c constraints.txt 'torch==2.13.0' neuralforecast
    touch "$stamp"
fi
"$venv/bin/python" -c 'import neuralforecast, torch; print("neuralforecast", neuralforecast.__version__, "torch", torch.__version__)'
