"""The one exception `encoders` raises for bad input (unknown encoder, missing extra, unreadable model)."""


class EncoderError(ValueError):
    """An encoder cannot be built or used; the message says what was wrong and what to do."""
