"""``python -m comparisons``: SIGINT and SIGTERM are recorded from the first instant (before
NumPy and the rest are imported), so that a signal during start-up ends the command with its
exit status and one line, never a traceback (``comparisons.progress``)."""

import sys

from comparisons.run.interrupts import install_signal_recorder


def entry() -> int:
    """The command line, with the signals recorded before anything heavy is imported."""
    install_signal_recorder()
    from comparisons.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(entry())
