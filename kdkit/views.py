"""Views of a 1-D signal: the same example seen through a fixed transform.

Teachers that see different views of the input make mistakes for different reasons, which is
what a mixture of teachers needs (notebook 07). A view is a function of a batch ``(B, L)``;
:class:`Viewed` puts one in front of a network, so the pair behaves like any model that reads
the raw signal (its logits can be cached with :func:`kdkit.train.with_teacher_outputs`).

* ``raw``: the signal itself.
* ``difference``: the first difference ``x[t] - x[t-1]`` (with ``x[-1] = x[0]``, so the length
  is kept and the first value is 0): slopes instead of levels.
* ``spectrum``: the magnitude of the real FFT, ``|rfft(x)|`` (``L // 2 + 1`` bins). It forgets
  where a pattern sits (a shift only changes the phase), and with it much of what tells the
  digits apart.
"""
from __future__ import annotations

import hashlib
import inspect
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from kdkit.validation import check_choice


def raw(x: Tensor) -> Tensor:
    return x


def first_difference(x: Tensor) -> Tensor:
    return torch.diff(x, dim=-1, prepend=x[..., :1])


def spectrum_magnitude(x: Tensor) -> Tensor:
    return torch.fft.rfft(x, dim=-1).abs()


VIEWS: dict[str, Callable[[Tensor], Tensor]] = {
    "raw": raw,
    "difference": first_difference,
    "spectrum": spectrum_magnitude,
}


def view_shape(view: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of one example after ``view`` (without the batch dimension)."""
    check_choice("view", view, VIEWS)
    return tuple(VIEWS[view](torch.zeros(1, *input_shape)).shape[1:])


def view_source(view: str) -> str:
    """A short hash of the view's code: part of a cached teacher's key, so that a teacher trained on
    one version of a view is never loaded to read another."""
    check_choice("view", view, VIEWS)
    return hashlib.sha256(inspect.getsource(VIEWS[view]).encode()).hexdigest()[:12]


class Viewed(nn.Module):
    """A network that reads the raw signal through a fixed view: ``network(view(x))``."""

    def __init__(self, view: str, network: nn.Module):
        super().__init__()
        check_choice("view", view, VIEWS)
        self.view, self.network = view, network

    def forward(self, x: Tensor) -> Tensor:
        return self.network(VIEWS[self.view](x))

    def extra_repr(self) -> str:
        return f"view={self.view!r}"
