"""The one exception `align` raises for bad input (dims, NaN rows, too few vectors, corrupt artifacts)."""


class AlignError(ValueError):
    """Input a translator cannot use; the message says what was wrong and what to do."""
