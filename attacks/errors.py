"""The attacks room's own error: a bad attack or defence description, said in one line."""


class AttackError(ValueError):
    """Bad input to an attack or a defence (an unknown defence, a bad parameter, too few labelled rows)."""
