"""The engine contract of one run spec, written out: every name an engine under test is
given, keeps and returns in this run, with its shape, whether it is required, and its
equation (``python -m comparisons contract``). ``run/contract.py`` states the contract in
general; this is the same for one configuration, so that an implementation can be written
without reading the project's code."""

from __future__ import annotations

from comparisons.run.contract import REQUIRED_KINDS
from comparisons.run.engines import initial_state
from comparisons.run.inputs import RunInputs
from scratch.trace_equations import describe
from scratch.trace_schema import kind_of, names_of, parse, shape_of


def engine_contract(inputs: RunInputs) -> dict:
    """{"run": what the run is, "state": [...], "given": [...], "trace": [...]}: each entry
    {"name", "shape", "required", "kind", "equation", "meaning"}. Shapes are at the run's
    batch size (B); the last batch of an epoch may have fewer rows."""
    mlp, optimizer, spec = inputs.mlp, inputs.optimizer, inputs.spec
    B = spec.batch_size

    def entry(name: str, required: bool, shape=None) -> dict:
        about = describe(name, mlp, optimizer)
        return {
            "name": name,
            "shape": list(shape if shape is not None else shape_of(name, mlp.sizes, B)),
            "required": required,
            "kind": about.tensor.kind,
            "equation": about.equation,
            "meaning": parse(name).family.meaning,
        }

    params, opt_state = inputs.params0, initial_state(optimizer, inputs.params0)
    state = [entry(p, True, v.shape) for p, v in params.items()]
    state += [entry(n, True, getattr(v, "shape", ())) for n, v in opt_state.items()]
    given = [entry(f"M{l}", True) for l in range(1, mlp.n_layers)] if mlp.dropout else []
    trace = [entry(n, kind_of(n) in REQUIRED_KINDS) for n in names_of(mlp, optimizer)]
    return {
        "run": {
            "sizes": list(mlp.sizes),
            "activations": [mlp.activation_of(l) for l in range(1, mlp.n_layers + 1)],
            "loss": mlp.loss,
            "optimizer": optimizer.name,
            "dtype": spec.dtype,
            "batch_size": B,
            "dropout": mlp.dropout,
            "batch_norm": mlp.batch_norm,
            "clip_norm": optimizer.clip_norm,
            "lr_schedule": optimizer.lr_schedule,
        },
        "state": state,
        "given": given,
        "trace": trace,
    }


def render(contract: dict) -> list[str]:
    """The contract as text: a table per part."""
    run = contract["run"]
    lines = [
        f"The engine contract of this run: sizes {tuple(run['sizes'])}, activations "
        f"{', '.join(run['activations'])}, loss {run['loss']}, optimizer {run['optimizer']}, "
        f"{run['dtype']}, batches of B = {run['batch_size']} rows (the last of an epoch may "
        "have fewer). comparisons/run/contract.py states the contract in general.",
        "",
        "set_state(params, opt_state) is given, and state() returns, every name below "
        "(params: the parameters; opt_state: the rest), all required:",
        *_table(contract["state"]),
    ]
    if contract["given"]:
        lines += [
            "",
            "step(X, Y, masks=masks) is given each hidden layer's keep mask (0s and 1s; the "
            "engine draws none):",
            *_table(contract["given"]),
        ]
    lines += [
        "",
        "step(X, Y) returns the trace: a required name that is missing is a disagreement; an "
        "optional one is reported as not provided and not compared (with complete = True, "
        "every name is required):",
        *_table(contract["trace"]),
    ]
    return lines


def _table(entries: list[dict]) -> list[str]:
    width = max(len(e["name"]) for e in entries)
    shapes = [str(tuple(e["shape"])) for e in entries]
    shape_width = max(map(len, shapes))
    return [
        f"  {e['name']:<{width}}  {shape:<{shape_width}}  "
        f"{'required' if e['required'] else 'optional'}  {e['equation']}"
        for e, shape in zip(entries, shapes, strict=True)
    ]
