"""The environment fingerprint, with and without the optional threadpoolctl."""

from __future__ import annotations

import builtins

from comparisons.report.document import Document, Section, Verdict
from comparisons.report.environment import fingerprint
from comparisons.report.markdown import write
from comparisons.report.sections import environment_section


def test_the_fingerprint_names_numpy_its_blas_and_the_thread_variables():
    env = fingerprint(["scratch"])
    assert env["numpy"] and env["blas"]["name"]
    assert "OMP_NUM_THREADS" in env["thread_variables"]
    assert env["torch"] is None and env["jax"] is None  # not used by this run


def test_without_threadpoolctl_the_fingerprint_says_so_and_reports_still_render(monkeypatch):
    real_import = builtins.__import__

    def no_threadpoolctl(name, *args, **kwargs):
        if name == "threadpoolctl":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_threadpoolctl)
    env = fingerprint(["scratch"])
    assert env["blas"]["threadpools"] == []
    assert "threadpoolctl is not installed" in env["blas"]["threadpools_note"]
    section = Section("environment", "Environment", environment_section({"environment": env}))
    markdown = write(Document("report", Verdict("AGREE", True), (section,)))
    assert "threadpoolctl is not installed" in markdown
