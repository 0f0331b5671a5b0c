"""Checking a ``--json`` report against its schema in wmark/schemas/ (docs/design.md section 6)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "wmark" / "schemas"


@cache
def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def schema_for(report_type: str) -> dict[str, Any]:
    """The schema of ``wmark/NAME`` reports is wmark/schemas/NAME.json."""
    assert report_type.startswith("wmark/"), report_type
    return json.loads((SCHEMAS / f"{report_type.removeprefix('wmark/')}.json").read_text())


def assert_valid_report(report: Any, report_type: str) -> None:
    """``report`` is a ``report_type`` report, valid against its schema (every error listed)."""
    assert isinstance(report, dict) and report.get("type") == report_type, report
    schema = schema_for(report_type)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
