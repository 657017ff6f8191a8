"""The JSON Schema of report.json, shipped with the package (``snn-compress schema`` prints it)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

REPORT_SCHEMA_VERSION = 1
_REPORT_SCHEMA = Path(__file__).with_name("report.schema.json")


@lru_cache(maxsize=1)
def report_schema() -> dict:
    """The JSON Schema (draft 2020-12) that every report.json validates against."""
    return json.loads(_REPORT_SCHEMA.read_text(encoding="utf-8"))


def validate_report(report: dict) -> None:
    """Raise ``jsonschema.ValidationError`` when ``report`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(report, report_schema(), cls=jsonschema.Draft202012Validator)


__all__ = ["REPORT_SCHEMA_VERSION", "report_schema", "validate_report"]
