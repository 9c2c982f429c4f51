"""The smoke's one failure type."""


class SmokeError(Exception):
    """A check failed; the message says which and why."""
