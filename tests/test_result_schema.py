"""``result.json`` has one JSON Schema, derived from the dataclasses of ``ntxmeta.result``.

The schema file for readers (``workflow/schemas/result.schema.json``) is the
derived one; a real result validates against it (with jsonschema, not with
our own reader), and a result with a misspelt, missing or mistyped field
does not.
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ntxmeta.result import json_schema
from test_analysis import bcg_effects, bcg_plan

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "workflow" / "schemas" / "result.schema.json"


@pytest.fixture(scope="module")
def document() -> dict:
    from ntxmeta.analysis import run_plan
    return json.loads(run_plan(bcg_plan(), bcg_effects()).to_json())


def test_the_schema_file_is_the_derived_schema():
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == json_schema(), (
        "regenerate: python -c 'import json; from ntxmeta.result import json_schema; "
        "print(json.dumps(json_schema(), indent=1, ensure_ascii=False))' > " + str(SCHEMA_FILE))


def test_a_real_result_validates(document):
    jsonschema.Draft202012Validator(json_schema()).validate(document)


@pytest.mark.parametrize("spoil", ["extra", "missing", "type"])
def test_a_spoilt_result_does_not(document, spoil):
    bad = json.loads(json.dumps(document))
    if spoil == "extra":
        bad["main"]["estimte"] = 0.1
    elif spoil == "missing":
        del bad["main"]["ci"]
    else:
        bad["k_used"] = "13"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(json_schema()).validate(bad)
