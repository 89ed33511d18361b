"""User-facing errors: one line naming the problem and the fix; the CLI exits with status 2."""


class BenchError(Exception):
    """Bad input (argument, config value or data file). ``str(err)`` is the one-line message."""
