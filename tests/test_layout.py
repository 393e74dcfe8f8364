"""The architecture's rules that a reader would otherwise have to take on trust.

* the package never names an output path: every path comes from the
  rule's input and output (or the command line), so no ``"results/..."``
  string constant exists in ``src/ntxmeta`` outside docstrings;
* every rule of the workflow has a ``log:``;
* the package never imports Snakemake;
* importing the workflow module is cheap: it does not import the
  statistics, plotting or report modules a job may never need.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ntxmeta"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_no_output_path_literal_in_the_package():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docs and re.search(r"(^|[\s\"'])results/", node.value)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def test_the_check_finds_a_planted_literal(tmp_path):
    tree = ast.parse('"""results/ in a docstring is fine"""\nOUT = "results/tables"\n')
    docs = _docstrings(tree)
    hits = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in docs
            and isinstance(n.value, str) and "results/" in n.value]
    assert hits == ["results/tables"]


def test_every_rule_has_a_log():
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"^rule ", smk.read_text(encoding="utf-8"), flags=re.M)[1:]
        for block in blocks:
            name = block.split(":", 1)[0]
            assert re.search(r"^\s+log:", block, flags=re.M), f"{smk.name}: rule {name} has no log"


def test_the_package_never_imports_snakemake():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "snakemake" for n in names), path


def test_importing_the_workflow_module_loads_no_statistics_or_plots():
    code = ("import sys, ntxmeta.workflow; "
            "print(','.join(m for m in ('matplotlib', 'statsmodels', 'pymare', 'scipy.stats', "
            "'ntxmeta.rma', 'ntxmeta.plots', 'ntxmeta.report') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
