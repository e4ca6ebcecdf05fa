"""The error type for bad input: options, data, checkpoints, command-line arguments.

Entry points (train.py, test.py, the xfusion command) print such an error as one line naming
the option or file and the fix, and exit with status 2; anything else is a bug and keeps its
traceback.
"""


class InputError(ValueError):
    """Bad input, described in one line that names the option or file at fault and the fix."""


class SequenceError(InputError):
    """Bad input data: the message names the file and what is wrong with it."""
