"""An RO-Crate of a run: the workflow, its config and data, every output, with checksums.

:func:`write_crate` writes ``ro-crate-metadata.json`` at the project folder:
the folder is the crate's root (RO-Crate 1.1 "attached" crate [1]_), so
that every file of the run (``Snakefile`` and ``workflow/``, ``config/``,
``data/raw/``, ``data/screening/``, ``data/rob/``, ``data/reference/`` and
every output under ``data/processed/`` and ``results/``) is a data entity
with its path relative to the root. A crate rooted at ``results/`` could
not hold the workflow and the raw data, which lie outside it (RO-Crate data
entities are paths inside the root or web URIs). A zip of the project
folder after a run is then a crate that Zenodo (or WorkflowHub, whose
Workflow RO-Crate profile [2]_ expects the metadata file at the top of a
repository) takes as it is.

What the crate says:

- the root dataset: name, description and licence from ``pyproject.toml``
  (and ``CITATION.cff`` if there is one, for the authors); without authors
  the creator is a placeholder to fill in before deposit;
- ``Snakefile`` as the main entity, a ``ComputationalWorkflow`` in the
  language Snakemake (the profile of the ``rocrate`` package [3]_), with
  the files of ``workflow/`` as its parts;
- every file as a ``File`` with ``contentSize`` (bytes) and ``sha256``
  (schema.org's ``sha256`` of a MediaObject [4]_), in sorted order;
- the software: ntxmeta, Python and the key packages (pandas, numpy, scipy,
  statsmodels, matplotlib, snakemake, ...) as ``SoftwareApplication``
  entities with their versions, the workflow's ``softwareRequirements``;
- one ``CreateAction`` (the run) with the workflow and ntxmeta as
  ``instrument``, the config and data as ``object``, the outputs as
  ``result``.

Determinism: no time of day is recorded; ``datePublished`` is the date of
the newest input file (workflow, config, data), so a re-run on the same
inputs gives the same bytes, and :func:`write_crate` leaves a file with the
same content unwritten (it only sets its modification time, so that
Snakemake sees the crate newer than its inputs).

References
----------
.. [1] RO-Crate 1.1 (Soiland-Reyes et al., Data Science 2022;5:97-138),
   https://w3id.org/ro/crate/1.1 "Root Data Entity" and "Data Entities".
.. [2] Workflow RO-Crate profile 1.0, https://w3id.org/workflowhub/workflow-ro-crate/1.0
.. [3] ro-crate-py, https://github.com/ResearchObject/ro-crate-py
   (``ROCrate.add_workflow(lang="snakemake")``).
.. [4] https://schema.org/sha256
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["CRATE_FILE", "KEY_PACKAGES", "sha256_of", "build_crate", "crate_json", "write_crate",
           "read_crate_files", "missing_from_crate"]

#: The metadata file, at the crate's root (the project folder).
CRATE_FILE = "ro-crate-metadata.json"
#: Packages whose versions the crate records (those the results depend on).
KEY_PACKAGES = ("numpy", "scipy", "pandas", "statsmodels", "pymare", "matplotlib", "seaborn",
                "jsonschema", "PyYAML", "snakemake", "rocrate")
#: Read size of the checksum (1 MiB: the largest results are a few MB).
CHUNK_BYTES = 1 << 20
#: Media types of the files of a run, by suffix. A fixed table, not
#: ``mimetypes`` (which reads the machine's /etc/mime.types), so that the
#: crate is the same on every machine; other suffixes get none.
MEDIA_TYPES = {".csv": "text/csv", ".md": "text/markdown", ".json": "application/json",
               ".yaml": "application/yaml", ".yml": "application/yaml", ".png": "image/png",
               ".svg": "image/svg+xml", ".pdf": "application/pdf", ".html": "text/html",
               ".rst": "text/x-rst", ".txt": "text/plain"}
#: The creator when neither pyproject.toml nor CITATION.cff names one.
AUTHOR_PLACEHOLDER = "Author(s): fill in before deposit (CITATION.cff or pyproject.toml [project].authors)"


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (hashlib; read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _rel(root: Path, path: str | Path) -> str:
    p = Path(path)
    p = p if p.is_absolute() else root / p
    return Path(os.path.relpath(p, root)).as_posix()


def _project_meta(root: Path) -> dict:
    """name, description, version, licence and authors from pyproject.toml and CITATION.cff."""
    out = {"name": root.name, "description": "", "license": None, "authors": [],
           "version": None}
    py = root / "pyproject.toml"
    if py.is_file():
        project = tomllib.loads(py.read_text("utf-8")).get("project", {})
        out.update(name=project.get("name", out["name"]),
                   description=project.get("description", ""), version=project.get("version"))
        lic = project.get("license")
        out["license"] = lic.get("text") if isinstance(lic, dict) else lic
        out["authors"] = [a.get("name") for a in project.get("authors", []) if a.get("name")]
    cff = root / "CITATION.cff"
    if cff.is_file():
        import yaml
        cit = yaml.safe_load(cff.read_text("utf-8")) or {}
        names = [" ".join(filter(None, (a.get("given-names"), a.get("family-names")))) or a.get("name")
                 for a in cit.get("authors", []) if isinstance(a, dict)]
        out["authors"] = [n for n in names if n] or out["authors"]
        out["license"] = cit.get("license", out["license"])
        out["name"] = cit.get("title", out["name"])
    return out


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _software(crate) -> list:
    """SoftwareApplication entities: ntxmeta, Python and :data:`KEY_PACKAGES` (those installed)."""
    from rocrate.model.contextentity import ContextEntity
    apps = []
    for name in ("ntxmeta", *KEY_PACKAGES):
        version = _version(name)
        if version is None:
            continue
        apps.append(crate.add(ContextEntity(crate, f"https://pypi.org/project/{name}/{version}/", {
            "@type": "SoftwareApplication", "name": name, "version": version,
            "url": f"https://pypi.org/project/{name}/"})))
    py = platform.python_version()
    apps.append(crate.add(ContextEntity(crate, f"https://www.python.org/downloads/release/python-{py.replace('.', '')}/", {
        "@type": "SoftwareApplication", "name": f"Python ({platform.python_implementation()})",
        "version": py, "url": "https://www.python.org/"})))
    return apps


def _file_props(path: Path) -> dict:
    mime = MEDIA_TYPES.get(path.suffix.lower())
    props = {"contentSize": str(path.stat().st_size), "sha256": sha256_of(path)}
    if mime:
        props["encodingFormat"] = mime
    return props


def build_crate(root: str | Path, *, workflow_files: Iterable[str | Path],
                inputs: Iterable[str | Path], outputs: Iterable[str | Path]):
    """The crate of a run, as a ``rocrate.rocrate.ROCrate`` (nothing is written or copied).

    Parameters
    ----------
    root : path
        The project folder: the crate's root; every path below is in it.
    workflow_files : iterable of path
        ``Snakefile`` first (the main workflow), then the files of ``workflow/``.
    inputs : iterable of path
        The config and the data (data/raw, data/screening, ...).
    outputs : iterable of path
        Every output of the run (data/processed, results).

    Raises
    ------
    ValueError
        A path outside ``root``, or one given twice.
    FileNotFoundError
        A path that is not a file.
    """
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate
    root = Path(root).resolve()
    groups = {k: [_rel(root, p) for p in v] for k, v in
              (("workflow", workflow_files), ("inputs", inputs), ("outputs", outputs))}
    seen: set[str] = set()
    for rels in groups.values():
        for rel in rels:
            if rel.startswith("../"):
                raise ValueError(f"{rel}: outside the crate root {root}")
            if rel in seen:
                raise ValueError(f"{rel}: given twice")
            if not (root / rel).is_file():
                raise FileNotFoundError(f"{rel}: not a file under {root}")
            seen.add(rel)
    meta = _project_meta(root)
    crate = ROCrate(gen_preview=False)
    newest = max((root / r).stat().st_mtime for r in groups["workflow"] + groups["inputs"])
    crate.root_dataset["datePublished"] = datetime.datetime.fromtimestamp(
        newest, datetime.timezone.utc).date().isoformat()
    crate.name = meta["name"]
    crate.description = (meta["description"] or meta["name"]) + (
        ": the workflow, its config and data, and every output of one run, with checksums")
    if meta["license"]:
        lic = crate.add(ContextEntity(crate, f"https://spdx.org/licenses/{meta['license']}", {
            "@type": "CreativeWork", "name": f"{meta['license']} License"}))
        crate.license = lic
    authors = meta["authors"] or [AUTHOR_PLACEHOLDER]
    people = [crate.add(ContextEntity(crate, f"#author-{i}", {"@type": "Person", "name": n}))
              for i, n in enumerate(authors, 1)]
    crate.root_dataset["author"] = people
    software = _software(crate)
    main, *parts = groups["workflow"]
    wf = crate.add_workflow(root / main, dest_path=main, main=True, lang="snakemake",
                            properties={"name": "ntxmeta Snakemake workflow",
                                        **_file_props(root / main)})
    wf["softwareRequirements"] = software
    wf_parts = [crate.add_file(root / r, dest_path=r, properties=_file_props(root / r)) for r in parts]
    wf["hasPart"] = wf_parts
    ins = [crate.add_file(root / r, dest_path=r, properties=_file_props(root / r))
           for r in groups["inputs"]]
    outs = [crate.add_file(root / r, dest_path=r, properties=_file_props(root / r))
            for r in groups["outputs"]]
    ntx = [s for s in software if s.get("name") == "ntxmeta"]
    crate.add(ContextEntity(crate, "#run", {
        "@type": "CreateAction", "name": f"Run of the {meta['name']} workflow",
        "instrument": [wf, *ntx], "object": ins, "result": outs}))
    return crate


def crate_json(crate) -> str:
    """The crate's metadata as text: JSON, indented, keys sorted, UTF-8 kept, newline at the end."""
    return json.dumps(crate.metadata.generate(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_crate(root: str | Path, out: str | Path | None = None, *, workflow_files: Sequence,
                inputs: Sequence, outputs: Sequence) -> bool:
    """Build the crate (:func:`build_crate`) and write its metadata to ``out``; True if written.

    ``out`` defaults to ``root/ro-crate-metadata.json``. A file that already
    holds the same text is not rewritten, only its modification time is set
    to now (Snakemake then sees the crate newer than its inputs and does not
    run the job again). Written atomically (:func:`ntxmeta.io.write_text`).
    """
    from .io import write_text
    root = Path(root)
    out = Path(out) if out is not None else root / CRATE_FILE
    text = crate_json(build_crate(root, workflow_files=workflow_files, inputs=inputs, outputs=outputs))
    if out.is_file() and out.read_text("utf-8") == text:
        os.utime(out)
        return False
    write_text(out, text)
    return True


def read_crate_files(metadata_path: str | Path) -> dict[str, dict]:
    """The File entities of a crate's metadata, by @id (read with rocrate's reader).

    The crate folder is the metadata file's folder. Returns ``{id: {"sha256":
    ..., "contentSize": ...}}``.
    """
    from rocrate.rocrate import ROCrate
    crate = ROCrate(Path(metadata_path).parent)
    return {e.id: {"sha256": e.get("sha256"), "contentSize": e.get("contentSize")}
            for e in crate.get_entities() if "File" in e.type}


def missing_from_crate(metadata_path: str | Path, files: Iterable[str | Path]) -> list[str]:
    """Which of ``files`` the crate does not hold with their current checksum (relative ids)."""
    root = Path(metadata_path).resolve().parent
    held = read_crate_files(metadata_path)
    out = []
    for f in files:
        rel = _rel(root, f)
        entry = held.get(rel)
        if entry is None or entry["sha256"] != sha256_of(root / rel):
            out.append(rel)
    return out
