"""The README's code runs as written, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)


def test_readme_has_python_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(index: int) -> None:
    exec(compile(PYTHON_BLOCKS[index], f"README.md python block {index}", "exec"), {})


def test_ci_runs_the_readme_test_command() -> None:
    test_command = BASH_BLOCKS[1].strip()
    assert test_command.startswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1].strip() == test_command


def test_readme_install_command_pins_cpu_torch_and_oracle_without_deps() -> None:
    install = BASH_BLOCKS[0]
    assert '"torch==2.13.0"' in install
    assert '--no-deps "spikingjelly==2.0.0"' in install
    assert install.strip().endswith("purelearn train")
