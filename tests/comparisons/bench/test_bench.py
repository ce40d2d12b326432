"""The benchmark's machinery on tiny sizes: what it measures, writes and judges.

No timing is asserted here: the speed targets are figures the bench prints, not tests.
"""

from __future__ import annotations

import argparse
import json

import pytest

from comparisons import bench
from comparisons.bench import render, steps, targets
from comparisons.run.spec import SpecError


def bench_args(tmp_path, *options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(["--out", str(tmp_path / "bench"), "--quiet", *options])


TINY = ("--sizes", "5-4-1:8", "--repeats", "2", "--dtypes", "float64", "--no-main-job")


def test_scratch_alone_writes_the_figures_the_table_and_the_plot(tmp_path):
    args = bench_args(tmp_path, *TINY, "--engines", "scratch", "--oracle-steps", "0")
    assert bench.run(args) == 0
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())
    (row,) = report["steps"]
    assert (row["sizes"], row["batch"], row["dtype"]) == ([5, 4, 1], 8, "float64")
    assert list(row["engines"]) == ["scratch"]
    assert row["engines"]["scratch"]["repeats"] == 2
    assert row["engines"]["scratch"]["min_s"] <= row["engines"]["scratch"]["median_s"]
    assert row["matmul_flops"] == 2 * 8 * (5 * 4 + 4 * 1) * 2 + 2 * 8 * 4 * 1
    assert report["threads"]["requested"] == 1 and report["oracle"] == []
    peak = report["peak"]["float64"]
    assert peak["flops"] == 2 * peak["n"] ** 3 and peak["gflops"] > 0
    scratch = row["engines"]["scratch"]
    assert scratch["peak_fraction"] == pytest.approx(scratch["gflops"] / peak["gflops"])
    markdown = (tmp_path / "bench" / "bench.md").read_text()
    assert "## Time per training step" in markdown and "| 5-4-1 @ 8 | float64 |" in markdown
    assert [t["met"] for t in report["targets"]] == [None]  # no main job: not measured
    if (tmp_path / "bench" / "bench.svg").exists():  # with matplotlib
        assert "<svg" in (tmp_path / "bench" / "bench.svg").read_text()


@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.slow  # ~25 s: torch.compile and JAX compilations
def test_every_engine_and_the_oracles_cost(tmp_path):
    args = bench_args(
        tmp_path,
        *TINY,
        "--engines",
        "scratch,torch,jax",
        "--oracle-steps",
        "20",
        "--oracle-widths",
        "4-3",
    )
    assert bench.run(args) == 0
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())
    engines = report["steps"][0]["engines"]
    assert all(engines[e]["median_s"] > 0 for e in ("scratch", "torch", "jax"))
    assert report["threads"]["torch_intra_op"] == 1
    (oracle,) = report["oracle"]
    assert (oracle["sizes"], oracle["steps"], oracle["agree"]) == ([5, 4, 3, 1], 20, True)
    assert set(oracle["bare_s"]) == {"scratch", "torch", "jax"}
    assert oracle["lockstep_s"] == pytest.approx(sum(oracle["breakdown_s"].values()))
    assert oracle["report_peak_mib"] > 0
    assert any("lockstep overhead" in t["target"] for t in report["targets"])


def test_the_matmul_bound_has_every_product_of_a_step_in_scratchs_layout(rng):
    products = steps.matmul_products((5, 8, 4, 1), 50, "float64", rng)
    shapes = [(a.shape, b.shape) for a, b in products]
    assert shapes == [
        ((50, 5), (5, 8)),  # forward A0 @ W1
        ((50, 8), (8, 4)),
        ((50, 4), (4, 1)),
        ((4, 50), (50, 1)),  # dW3 = A2.T @ dZ3
        ((50, 1), (1, 4)),  # dZ3 @ W3.T, on the way to dZ2
        ((8, 50), (50, 4)),
        ((50, 4), (4, 8)),
        ((5, 50), (50, 8)),  # dW1 = X.T @ dZ1; nothing flows into X
    ]
    assert steps.matmul_flops(products) == sum(2 * a[0] * a[1] * b[1] for a, b in shapes)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--sizes", "5-x-1:8"),
        ("--sizes", "huge"),
        ("--engines", "scratch,tensorflow"),
        ("--dtypes", "float16"),
        ("--oracle-steps", "30"),
        ("--threads", "0"),
    ],
)
def test_a_bad_option_says_which(tmp_path, option, value):
    with pytest.raises(SpecError, match=option):
        bench.run(bench_args(tmp_path, option, value))
    assert not (tmp_path / "bench").exists()


def test_device_gpu_where_no_framework_sees_one_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("comparisons.bench.command._gpu_name", lambda: None)
    with pytest.raises(SpecError, match="--device gpu: neither PyTorch nor JAX sees a GPU"):
        bench.run(bench_args(tmp_path, *TINY, "--device", "gpu"))
    assert not (tmp_path / "bench").exists()


def step_row(size, dtype, wide, **medians):
    return {
        "size": size,
        "dtype": dtype,
        "wide": wide,
        "matmul_bound": {"median_s": 1.0},
        "engines": {e: {"median_s": s} for e, s in medians.items()},
    }


def test_the_targets_are_judged_from_the_figures():
    report = {
        "steps": [
            step_row("default", "float64", False, scratch=1.0, torch=2.5, jax=0.9),
            step_row("wide-1024", "float64", True, scratch=1.1),
            step_row("wide-1024", "float32", True, scratch=1.3),
        ],
        "oracle": [{"sizes": [5, 8, 4, 1], "steps": 100, "ratio": 1.4}],
        "main_job": {"wall_s": 25.0, "exit_status": 0},
    }
    met = {t["target"].split(":")[0] + ": " + t["figure"]: t["met"] for t in targets.judge(report)}
    on_the_gpu = targets.judge({**report, "settings": {"device": "gpu"}})
    assert {t["id"] for t in targets.judge(report)} - {t["id"] for t in on_the_gpu} == {
        "torch-eager/float64",  # scratch on the CPU against the frameworks on a GPU: figures,
        "jax-jit/float64",  # not the targets
    }
    assert met == {
        "default size, float64: torch eager / scratch = 2.50×": True,
        "default size, float64: jax jit / scratch = 0.90×": False,
        "wide-1024, float64: scratch / bare matmuls = 1.10×": True,
        "wide-1024, float32: scratch / bare matmuls = 1.30×": False,
        "lockstep overhead, 5-8-4-1, 100 steps: lockstep / bare engines = 1.40×": True,
        "python -m comparisons run on Occupancy, imports included, within 6 s: 25.0 s": False,
    }


def test_a_later_run_is_read_against_an_earlier_one_target_by_target():
    earlier = {
        "steps": [step_row("default", "float64", False, scratch=1.0, jax=0.5)],
        "oracle": [{"sizes": [5, 8, 4, 1], "steps": 100, "ratio": 4.0}],
        "main_job": None,
    }
    later = {**earlier, "oracle": [{"sizes": [5, 8, 4, 1], "steps": 100, "ratio": 2.0}]}
    later["steps"] = [step_row("default", "float64", False, scratch=1.0, jax=0.4)]
    previous = {"targets": targets.judge(earlier)}
    now = targets.judge(later)
    targets.compare(now, previous)
    by_id = {t["id"]: t for t in now}
    assert by_id["oracle/5-8-4-1/100"]["previous"]["change"] == pytest.approx(0.5)
    assert by_id["oracle/5-8-4-1/100"]["previous"]["better"] is True  # lower is better here
    assert by_id["jax-jit/float64"]["previous"]["better"] is False  # higher is better here
    assert "previous" not in by_id["main-job"]  # not measured either time
    lines = targets.target_lines({"targets": now})
    assert any("(before: lockstep / bare engines = 4.00×, ×0.50)" in line for line in lines)
    assert "| before |" in render.render_markdown(bench_report(now))


def test_compare_needs_a_bench_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SpecError, match=r"not a bench\.json"):
        bench.run(bench_args(tmp_path, "--compare", str(bad)))
    with pytest.raises(SpecError, match="cannot read"):
        bench.run(bench_args(tmp_path, "--compare", str(tmp_path / "missing.json")))
    assert not (tmp_path / "bench").exists()


def bench_report(targets, **extra):
    """bench.json's content for one size timed by scratch alone, with the given targets."""
    timing = {"median_s": 1e-3, "min_s": 9e-4, "max_s": 2e-3, "gflops": 0.5}
    step = {
        "label": "5-8-4-1 @ 50",
        "dtype": "float64",
        "engines": {"scratch": timing},
        "matmul_bound": {**timing, "median_s": 5e-4},
        "matmul_flops": 1e6,
    }
    machine = {"cpu": "a <cpu>", "cpu_count": 2, "os": "linux", "python": "3.11"}
    threads = {"requested": 1, "usable_cpus": 2, "threadpools": []}
    report = {"machine": machine, "threads": threads, "steps": [step], "oracle": []}
    return {**report, "main_job": None, "plot": None, "targets": targets, **extra}


def test_bench_md_is_a_document_whose_verdict_names_the_missed_targets():
    missed = {"target": "scratch no slower than JAX jit", "figure": "ratio = 0.70×", "met": False}
    met = {"target": "the main job under 20 s", "figure": "12.0 s", "met": True}
    job = {"wall_s": 12.0, "exit_status": 0, "timings": {"run_s": 9.0}, "first_line": "agree"}
    doc = render.document(bench_report([missed, met], main_job=job, plot="bench.svg"))
    assert (doc.verdict.line, doc.verdict.agree) == ("1 of 2 measured targets missed.", False)
    assert doc.verdict.details == ("scratch no slower than JAX jit: ratio = 0.70×",)
    text = render.render_markdown(bench_report([missed, met], main_job=job, plot="bench.svg"))
    assert "| **missed** | scratch no slower than JAX jit | **ratio = 0.70×** |" in text
    assert "| met | the main job under 20 s | 12.0 s |" in text
    assert "a &lt;cpu&gt;, 2 CPUs (2 usable); python 3.11" in text  # escaped by the writer
    assert "on Occupancy: 12.0 s from start to exit" in text and "![the figures](bench.svg)" in text
    assert "| 5-8-4-1 @ 50 | float64 | 1 (0.9–2) | – | – |" in text
    assert render.document(bench_report([met])).verdict.line == "The 1 measured target met."
    unmeasured = {**met, "met": None, "figure": "not measured"}
    assert render.document(bench_report([met, met, unmeasured])).verdict.line == (
        "All 2 measured targets met; 1 not measured."
    )
    assert render.document(bench_report([unmeasured])).verdict.line == "No target measured."


def test_a_page_is_the_figures_rendering_under_the_command_that_regenerates_it(tmp_path):
    """--page writes FILE.md and FILE.json; the page states a command that, parsed again,
    measures the same things and writes the same page."""
    import shlex

    from comparisons.bench.page import command_of, render_page

    page = tmp_path / "benchmarks.md"
    options = (*TINY, "--engines", "scratch", "--oracle-steps", "0", "--page", str(page))
    assert bench.run(bench_args(tmp_path, *options)) == 0
    data = json.loads(page.with_suffix(".json").read_text(encoding="utf-8"))
    text = page.read_text(encoding="utf-8")
    assert text == render_page(data)
    assert f"Generated by `{data['command']}`" in text and "## Time per training step" in text
    assert data["bench"]["machine"]["cpu"] in text and len(data["load_average"]) == 3
    assert "![the figures]" not in text  # the plot stays in the report folder
    words = shlex.split(data["command"])
    assert words[:4] == ["python", "-m", "comparisons", "bench"]
    again = bench_args(tmp_path, *words[4:])
    assert command_of(again, page) == data["command"]
    for option in options:
        assert option in words


@pytest.mark.parametrize(
    ("page", "message"),
    [("bench.txt", "must end in .md"), ("missing/bench.md", "does not exist")],
)
def test_a_bad_page_is_refused_before_anything_is_measured(tmp_path, page, message):
    from comparisons.run.spec import SpecError

    args = bench_args(tmp_path, *TINY, "--page", str(tmp_path / page))
    with pytest.raises(SpecError, match=message):
        bench.run(args)
    assert not (tmp_path / "bench").exists()


def test_the_oracles_cost_is_measured_at_three_widths_the_widest_at_batch_256(tmp_path):
    plan = bench.command._plan(bench_args(tmp_path, "--quick"))
    if not plan.references:
        pytest.skip("neither PyTorch nor JAX is installed: the bench runs no oracle")
    widths = {(hidden, batch) for hidden, _, batch in plan.oracle}
    assert widths == {((8, 4), 50), ((64, 64), 50), ((256, 256), 256)}
    spec = bench.command.oracle_spec((256, 256), 40, plan.references, 256)
    assert (spec.batch_size, spec.synthetic_rows % spec.batch_size) == (256, 0)  # one shape


def test_an_oracle_width_takes_its_own_batch_and_the_target_names_it(tmp_path):
    args = bench_args(tmp_path, "--oracle-steps", "20,40", "--oracle-widths", "4-3,16-8@128")
    runs = bench.command._oracle_runs(args)
    assert runs == [((4, 3), 20, 50), ((4, 3), 40, 50), ((16, 8), 20, 128)]
    row = {"sizes": [5, 16, 8, 1], "batch": 128, "steps": 20, "ratio": 1.0}
    ids = {t["id"] for t in targets.judge({"steps": [], "oracle": [row], "main_job": None})}
    assert "oracle/5-16-8-1@128/20" in ids
    older = {k: v for k, v in row.items() if k != "batch"}  # a bench.json before the batch
    ids = {t["id"] for t in targets.judge({"steps": [], "oracle": [older], "main_job": None})}
    assert "oracle/5-16-8-1/20" in ids
    with pytest.raises(SpecError, match="--oracle-widths"):
        bench.command._oracle_runs(bench_args(tmp_path, "--oracle-widths", "4-3@x"))
