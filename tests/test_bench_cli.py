"""`rnnzoo bench SUITE [ARGS...]`: finds the suite's script, hands it ARGS, passes its exit status through."""
import json
import sys

import pytest

from rnnzoo.cli import bench
from rnnzoo.cli.main import main

# A stand-in benchmark: prints its name, argv and __name__ as JSON, then exits with the status in argv[1].
ECHO = """import json, sys
print(json.dumps({"tag": TAG, "argv": sys.argv[1:], "name": __name__}))
status = sys.argv[1]
sys.exit(int(status) if status.lstrip("-").isdigit() else status)
"""


def write_echo(folder, script, tag):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / script).write_text(f"TAG = {tag!r}\n" + ECHO)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnzoo: error: "), err
    return err[0]


def test_unknown_suite_is_an_argparse_error(capsys):
    assert main(["bench", "benchmarks-of-everything"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "tasks" in err


def test_missing_script_is_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "benchmark_dirs", lambda: [tmp_path])  # no folder holds the scripts
    assert main(["bench", "music", "--quick"]) == 2
    line = one_error_line(capsys)
    assert "music.py" in line and "run from a checkout of the rnnzoo repository" in line


def test_script_gets_the_arguments_and_its_exit_status_passes_through(monkeypatch, tmp_path, capsys):
    write_echo(tmp_path, "speed_all.py", "env")
    monkeypatch.setenv(bench.ENV_VAR, str(tmp_path))
    argv_before = list(sys.argv)
    args = ["3", "--mixers", "lstm", "gru", "--help"]  # --help belongs to the script, not to rnnzoo
    assert main(["bench", "speed", *args]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out == {"tag": "env", "argv": args, "name": "__main__"}
    assert sys.argv == argv_before
    assert main(["bench", "speed", "0"]) == 0
    assert main(["bench", "speed", "out of memory"]) == 1  # sys.exit(message): printed, status 1
    assert capsys.readouterr().err.strip().endswith("out of memory")


def test_override_folder_comes_before_the_current_directory(monkeypatch, tmp_path, capsys):
    write_echo(tmp_path / "cwd" / "benchmarks", "lm_tinyshakespeare.py", "cwd")
    write_echo(tmp_path / "env", "lm_tinyshakespeare.py", "env")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv(bench.ENV_VAR, str(tmp_path / "env"))
    assert main(["bench", "lm", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["tag"] == "env"
    monkeypatch.delenv(bench.ENV_VAR)
    assert main(["bench", "lm", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["tag"] == "cwd"


def test_tasks_suite_runs_the_repository_script(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(bench.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)  # found through the source checkout, not the current directory
    assert main(["bench", "tasks", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: diagnostics.py") and "--mqar-dims" in out and "--quick" in out


@pytest.mark.parametrize("suite", sorted(bench.SUITES))
def test_every_suite_names_a_script_in_its_message(monkeypatch, tmp_path, capsys, suite):
    monkeypatch.setattr(bench, "benchmark_dirs", lambda: [tmp_path / "nowhere"])
    assert main(["bench", suite]) == 2
    assert bench.SUITES[suite] in one_error_line(capsys)
