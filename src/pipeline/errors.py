"""The one exception type a user ever sees: a short message that names the problem and the fix."""


class PipelineError(Exception):
    """An error caused by input (params, data, models on disk), not by a bug.

    The command line prints ``str(error)`` as a single line and exits non-zero, without a traceback.
    """
