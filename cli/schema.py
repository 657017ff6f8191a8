"""The schema command: the JSON Schema of report.json, for CI jobs that validate it."""

from __future__ import annotations

import typer

from .app import JsonOpt, app, print_json


@app.command()
def schema(as_json: bool = JsonOpt):
    """Print the JSON Schema of report.json (always JSON; --json is accepted for symmetry).

    Example: snn-compress schema > report.schema.json && check-jsonschema --schemafile report.schema.json OUT/report.json
    """
    from ..schema import report_schema

    print_json(report_schema())
