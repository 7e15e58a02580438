"""What every checker returns, and how it calls the learner's code safely."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Feedback:
    """The checker's verdict: ``ok`` and a message that says what is right or off.

    Truthy when the answer is right; shown in a notebook as its message.
    """
    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return ("✅ " if self.ok else "❌ ") + self.message

    def __str__(self) -> str:
        return repr(self)


def call_answer(fn: Callable, *args, **kwargs):
    """``fn(...)``, or the Feedback that explains why it could not be used.

    The learner's code may raise anything: it is reported, never allowed to crash the notebook.
    """
    try:
        out = fn(*args, **kwargs)
    except NotImplementedError:
        return Feedback(False, "not answered yet: your function raises NotImplementedError")
    except Exception as error:  # noqa: BLE001 - any failure of the learner's code is feedback
        return Feedback(False, f"your function raised {error.__class__.__name__}: {error}")
    if out is None:
        return Feedback(False, "not answered yet: your function returned None")
    return out
