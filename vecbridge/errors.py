"""The error a user can act on: the CLI prints its message on one line and exits non-zero, no traceback."""


class UserError(ValueError):
    """Bad input or environment: the message says what was wrong and what to do."""
