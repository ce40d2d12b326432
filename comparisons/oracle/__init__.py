"""The oracle's core: tolerances, the one comparison helper, lockstep, drift, finite
differences, the first divergence and the arbitration of who is wrong."""
