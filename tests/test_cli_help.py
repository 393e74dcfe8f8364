"""Help texts: every subcommand says what it does and shows an example; the package builds quietly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ntxmeta.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def _help(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "ntxmeta.cli", *args, "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_subcommand_is_described():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_subcommand_help_says_what_it_does_with_an_example(name):
    text = _help(name)
    assert COMMANDS[name][1].split()[0] in text           # the description
    example = text.split("example:", 1)[1].strip()
    assert example.startswith(f"ntxmeta {name} ")


def test_top_level_help_has_an_example():
    assert "example:\n  ntxmeta validate" in _help()


def test_the_package_builds_without_a_deprecation_warning(tmp_path):
    """A wheel built as `pip install` builds it (isolated, newest setuptools) warns of nothing."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "deprecat" not in text.lower(), text[-3000:]
    assert list(tmp_path.glob("ntxmeta-*.whl"))
