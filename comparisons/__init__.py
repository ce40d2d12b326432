"""The oracle: it steps scratch and the references through the same mini-batches, compares
every tensor, and reports where they first disagree.

Rooms, bottom up (a room imports only itself and the rooms below it):
    run/      the run spec, one run's inputs, the engines
    oracle/   tolerances, comparison, lockstep, drift, finite differences, arbitration
    report/   the report's content, its sections, Markdown and HTML writers, plots
    faults/   the fault catalogue and its runner
    modes/    each run mode, from inputs to a report
    bench/    benchmarks
    cli.py    the command line
"""
