"""Errors the user can act on: one line, what was wrong and what would be right."""

import difflib


class AtelierError(Exception):
    """A failure explained in one line; tasks print it without a traceback."""


class StepFailed(AtelierError):
    """A step of a helper in a container failed: which one, and its exit code."""

    def __init__(self, step: str, code: int):
        super().__init__(f"{step} failed (exit {code})")
        self.step, self.code = step, code


def choice_error(what: str, value: object, choices) -> AtelierError:
    """An error for a value outside a known set, naming the nearest choices."""
    choices = [str(c) for c in choices]
    near = difflib.get_close_matches(str(value), choices, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    return AtelierError(
        f"unknown {what} {value!r}{hint}; valid: {', '.join(choices)}"
    )
