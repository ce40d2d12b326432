"""The JSON Schemas shipped with the tool are valid schemas, and they catch what they must:
every report the test suite makes the tool write is validated against them (tests/conftest.py
sets BACKPROP_ORACLE_VALIDATE), so here only that a wrong one is refused."""

from __future__ import annotations

import json

import jsonschema
import pytest

from comparisons import cli
from comparisons.report import atomic_folder, schema


@pytest.mark.parametrize("file_name", sorted(schema.SCHEMAS))
def test_each_shipped_schema_is_a_valid_json_schema(file_name):
    jsonschema.Draft202012Validator.check_schema(schema.load_schema(file_name))


@pytest.fixture
def written(tmp_path):
    out = tmp_path / "run"
    args = ["--set", "dataset=synthetic", "--set", "epochs=1", "--engines", "scratch"]
    assert cli.main(["run", *args, "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda r: r.pop("per_step"), "per_step"),
        (lambda r: r.update(verdict="probably fine"), "verdict"),
        (lambda r: r["per_tensor"].update(torch={"W1": {"max_abs": 1.0}}), "per_tensor"),
        (lambda r: r.update(schema_version=3), "schema_version"),
        (lambda r: r["per_step"][0].update(loss={"scratch": "a lot"}), "per_step"),
        (lambda r: r.pop("under_test"), "under_test"),
        # version 1's name for it
        (lambda r: r["walkthrough"][0].pop("max_abs_vs_under_test"), "max_abs_vs_under_test"),
    ],
    ids=[
        "missing-field",
        "unknown-verdict",
        "worst-entry",
        "newer-version",
        "not-a-number",
        "no-under-test",
        "version-1-walkthrough",
    ],
)
def test_a_report_that_breaks_the_contract_is_refused_before_it_is_written(
    written, tmp_path, change, where
):
    schema.validate(written, "report.json")  # as the tool wrote it
    change(written)
    with pytest.raises(jsonschema.ValidationError) as refused:
        schema.validate(written, "report.json")
    assert where in json.dumps(list(refused.value.absolute_path)) or where in str(refused.value)
    out = tmp_path / "refused"
    with pytest.raises(jsonschema.ValidationError):
        atomic_folder.write_report_folder(written, out, {})
    assert not out.exists()
