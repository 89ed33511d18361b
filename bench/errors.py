"""User-facing errors: one line naming the problem and the fix; the CLI exits with status 2."""


class BenchError(Exception):
    """Bad input (argument, config value or data file). ``str(err)`` is the one-line message."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, else its type name (for one-line
    errors wrapping third-party exceptions whose messages span many lines)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
