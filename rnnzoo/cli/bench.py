"""``rnnzoo bench SUITE [ARGS...]``: run one of the repository's benchmark scripts with ARGS.

    rnnzoo bench tasks --quick             # benchmarks/diagnostics.py: mixers x diagnostic tasks
    rnnzoo bench music --mixers gru        # benchmarks/music.py
    rnnzoo bench lm --group parallel       # benchmarks/lm_tinyshakespeare.py
    rnnzoo bench speed                     # benchmarks/speed_all.py
    rnnzoo bench tasks --help              # the script's own options

The benchmarks live in the repository, not in an installed package, so the script is looked up in this order:
the folder named by the environment variable RNNZOO_BENCHMARKS, ./benchmarks under the current directory, then
the benchmarks folder of the source checkout rnnzoo is imported from. The script runs in this process as
``__main__`` (runpy) with sys.argv = [script, *ARGS]; its exit status is the command's.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

from rnnzoo.errors import ConfigError

SUITES = {"tasks": "diagnostics.py", "music": "music.py", "speed": "speed_all.py", "lm": "lm_tinyshakespeare.py"}
ENV_VAR = "RNNZOO_BENCHMARKS"


def add_parser(commands) -> None:
    p = commands.add_parser("bench", help="run a benchmark suite of the repository (tasks, music, speed, lm)",
                            description=__doc__.split("\n\n")[0])
    p.add_argument("suite", choices=list(SUITES),
                   help="; ".join(f"{name}: benchmarks/{script}" for name, script in SUITES.items()))
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script (see rnnzoo bench SUITE --help)")
    p.set_defaults(run=run)


def benchmark_dirs() -> list[Path]:
    """Folders searched for the scripts, first match wins."""
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(Path.cwd() / "benchmarks")
    dirs.append(Path(__file__).resolve().parents[2] / "benchmarks")  # rnnzoo/cli/bench.py -> the checkout root
    return list(dict.fromkeys(d.resolve() for d in dirs))


def find_script(suite: str) -> Path:
    if suite not in SUITES:
        raise ConfigError(f"unknown benchmark suite {suite!r}; choose one of {', '.join(SUITES)}")
    for folder in benchmark_dirs():
        path = folder / SUITES[suite]
        if path.is_file():
            return path
    searched = ", ".join(str(d) for d in benchmark_dirs())
    raise ConfigError(f"benchmark script {SUITES[suite]} for suite {suite!r} not found (searched {searched}); "
                      f"run from a checkout of the rnnzoo repository, or set {ENV_VAR} to its benchmarks folder")


def run(args) -> int:
    script = find_script(args.suite)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.parent))  # as `python benchmarks/x.py` would: the scripts import their siblings
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:  # argparse, sys.exit(...) in the script
        code = exit_.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)  # sys.exit("message") prints it and exits 1, as the interpreter does
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0
