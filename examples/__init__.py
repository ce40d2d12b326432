"""Engines written outside this project's own code, plugged into the oracle by its contract."""
