"""The README's Python examples that start with an import run as written."""
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def runnable_blocks() -> list[str]:
    parts = README.read_text().split("```python\n")[1:]
    blocks = [p.split("```", 1)[0] for p in parts]
    return [b for b in blocks if b.startswith(("import", "from"))]


def test_readme_has_runnable_examples():
    assert len(runnable_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(runnable_blocks())))
def test_readme_example_runs(index):
    exec(compile(runnable_blocks()[index], f"README.md example {index}", "exec"), {})
