"""The task body of the raw django-q2 run: does nothing, so only q2's own cost is measured."""


def noop() -> None:
    return None
