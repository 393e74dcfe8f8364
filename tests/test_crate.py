"""The RO-Crate of a run (ntxmeta.crate) on a small project tree made here.

* every output file is in the crate with its size and the SHA-256 computed
  here with hashlib (the crate read back both with ``json`` and with
  rocrate's own reader);
* a file added after the crate was written is missing from it, and an
  output changed after it has a checksum that no longer matches
  (:func:`missing_from_crate` finds both: the check can fail);
* the Snakefile is the main entity, a ComputationalWorkflow in Snakemake,
  with workflow/ as its parts; the config and data are inputs of the run;
  ntxmeta, Python and pandas/numpy/... are recorded with the versions the
  interpreter reports (``pandas.__version__``, ``platform``);
* a second write with nothing changed leaves the bytes as they were and
  reports that it wrote nothing.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
from pathlib import Path

import matplotlib
import numpy
import pandas
import pytest
import scipy
import statsmodels

from ntxmeta import crate as nc

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("rocrate")


@pytest.fixture
def project(tmp_path: Path) -> dict:
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    files = {
        "Snakefile": "include: 'workflow/rules/a.smk'\n",
        "workflow/rules/a.smk": "rule a:\n    output:\n        'results/x.csv'\n",
        "workflow/report/a.rst": "A caption.\n",
        "config/config.yaml": "analyses: {}\n",
        "data/raw/alcohol.csv": "row_id,study_id\nr1,Latt2002\n",
        "data/screening/records.csv": "source_id,source,method\ns,Search,website\n",
        "results/tables/summary.csv": "a,b\n1,2\n",
        "results/figures/prisma/prisma.svg": "<svg/>\n",
        "results/figures/prisma/prisma.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        "data/processed/comparisons.csv": "row_id\nr1\n",
    }
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    return {"root": root,
            "workflow": ["Snakefile", "workflow/report/a.rst", "workflow/rules/a.smk"],
            "inputs": ["config/config.yaml", "data/raw/alcohol.csv", "data/screening/records.csv"],
            "outputs": sorted(str(p.relative_to(root)) for d in ("results", "data/processed")
                              for p in (root / d).rglob("*") if p.is_file())}


def write(project: dict) -> bool:
    return nc.write_crate(project["root"], workflow_files=project["workflow"],
                          inputs=project["inputs"], outputs=project["outputs"])


def graph(root: Path) -> dict:
    doc = json.loads((root / nc.CRATE_FILE).read_text("utf-8"))
    return {e["@id"]: e for e in doc["@graph"]}


def test_every_file_is_in_the_crate_with_its_checksum(project):
    root = project["root"]
    assert write(project)
    entities = graph(root)
    everything = project["workflow"] + project["inputs"] + project["outputs"]
    assert len(project["outputs"]) == 4
    for rel in everything:
        data = (root / rel).read_bytes()
        e = entities[rel]
        assert "File" in (e["@type"] if isinstance(e["@type"], list) else [e["@type"]])
        assert e["sha256"] == hashlib.sha256(data).hexdigest(), rel
        assert e["contentSize"] == str(len(data)), rel
    # rocrate's reader sees the same files and checksums
    from rocrate.rocrate import ROCrate
    read = ROCrate(root)
    files = {e.id: e for e in read.get_entities() if "File" in e.type}
    assert set(files) == set(everything)
    for rel in project["outputs"]:
        assert files[rel]["sha256"] == hashlib.sha256((root / rel).read_bytes()).hexdigest()
    assert nc.missing_from_crate(root / nc.CRATE_FILE, project["outputs"]) == []
    # every file is a part of the root dataset
    parts = {p["@id"] for p in entities["./"]["hasPart"]}
    assert set(everything) <= parts


def test_a_file_added_or_changed_after_is_missing(project):
    root = project["root"]
    write(project)
    late = root / "results/tables/late.csv"
    late.write_text("x\n1\n")
    assert "results/tables/late.csv" not in graph(root)
    changed = root / "results/tables/summary.csv"
    changed.write_text("a,b\n1,3\n")
    missing = nc.missing_from_crate(root / nc.CRATE_FILE, project["outputs"] + [late])
    assert missing == ["results/tables/summary.csv", "results/tables/late.csv"]


def test_workflow_config_and_software(project):
    root = project["root"]
    write(project)
    entities = graph(root)
    meta = entities["ro-crate-metadata.json"]
    assert meta["about"] == {"@id": "./"}
    assert entities["./"]["mainEntity"] == {"@id": "Snakefile"}
    wf = entities["Snakefile"]
    assert "ComputationalWorkflow" in wf["@type"]
    lang = entities[wf["programmingLanguage"]["@id"]]
    assert lang["name"] == "Snakemake"
    assert {p["@id"] for p in wf["hasPart"]} == {"workflow/report/a.rst", "workflow/rules/a.smk"}
    run = next(e for e in entities.values() if e.get("@type") == "CreateAction")
    assert {o["@id"] for o in run["object"]} == set(project["inputs"])
    assert {o["@id"] for o in run["result"]} == set(project["outputs"])
    versions = {entities[s["@id"]]["name"]: entities[s["@id"]]["version"]
                for s in wf["softwareRequirements"]}
    for module in (pandas, numpy, scipy, statsmodels, matplotlib):
        assert versions[module.__name__] == module.__version__
    assert versions[f"Python ({platform.python_implementation()})"] == platform.python_version()
    assert "ntxmeta" in versions and "snakemake" in versions
    assert entities["./"]["license"] == {"@id": "https://spdx.org/licenses/MIT"}
    author = entities[entities["./"]["author"][0]["@id"]]
    assert "fill in" in author["name"]  # no authors in pyproject.toml and no CITATION.cff


def test_second_write_changes_nothing(project):
    root = project["root"]
    assert write(project)
    before = (root / nc.CRATE_FILE).read_bytes()
    assert not write(project)
    assert (root / nc.CRATE_FILE).read_bytes() == before


def test_paths_outside_the_root_or_missing_are_refused(project, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text("x\n")
    with pytest.raises(ValueError, match="outside"):
        nc.build_crate(project["root"], workflow_files=project["workflow"],
                       inputs=project["inputs"], outputs=[outside])
    with pytest.raises(FileNotFoundError):
        nc.build_crate(project["root"], workflow_files=project["workflow"],
                       inputs=project["inputs"], outputs=["results/none.csv"])
