"""The run modes: from a run's inputs to a report dict (lockstep, drift, gradcheck, train).

Each mode runs the oracle and assembles its report; the command line writes the report and
chooses the exit status.
"""
