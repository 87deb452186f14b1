"""The one exception type a user ever sees: a short message that names the problem and the fix."""


class PipelineError(Exception):
    """An error caused by input (params, data, models on disk), not by a bug.

    The command line prints ``str(error)`` as a single line and exits non-zero, without a traceback.
    """


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message for a one-line error: its first line, shortened; its type if it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
