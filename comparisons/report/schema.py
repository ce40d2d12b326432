"""The JSON Schemas of the files the tool writes, shipped in ``comparisons/schemas/``:

``report.json``  ``report.schema.json`` (run, drift, gradcheck, check)
``faults.json``  ``faults.schema.json``
``bench.json``   ``bench.schema.json``

``validate(document, name)`` checks a report (as written: non-finite numbers as strings)
against its schema with the ``jsonschema`` package (the tests extra). What a change of
``schema_version`` means is written in ``comparisons/schemas/README.md``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

SCHEMAS = {
    "report.json": "report.schema.json",
    "faults.json": "faults.schema.json",
    "bench.json": "bench.schema.json",
}


@functools.cache
def load_schema(file_name: str) -> dict:
    """The schema of ``file_name`` (``report.json``, ``faults.json`` or ``bench.json``)."""
    text = (
        resources.files("comparisons")
        .joinpath("schemas", SCHEMAS[file_name])
        .read_text(encoding="utf-8")
    )
    return json.loads(text)


def validate(document: dict, file_name: str) -> None:
    """Raise ``jsonschema.ValidationError`` (with the path of what is wrong) unless
    ``document``, as written to ``file_name``, follows its schema."""
    import jsonschema  # the tests extra: only a consumer that validates needs it

    schema = load_schema(file_name)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        raise error
