"""Feature-based distillation: the student matches the teacher's intermediate feature maps.

Conventions (the code people benchmark with, RepDistiller, unless said otherwise):

* Teacher features are detached: no gradient ever reaches a teacher from here.
* Losses are means over all the elements they compare (``nn.MSELoss()``'s reduction), so
  their scale does not grow with the batch; the weight ``beta`` that multiplies them lives
  with the method (:class:`kdkit.objectives.FeatureHint`), not here.
* Maps are (B, C, L) for signals or (B, C, H, W) for images; vectors (B, D).

Notation: ``f_s``/``f_t`` student/teacher features; ``r`` a trainable regressor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdkit.validation import check_choice, check_features, check_positive

Tensor = torch.Tensor

__all__ = ["hint_loss", "cosine_feature_loss", "attention_map", "attention_transfer_loss", "AT_FORMS"]

AT_FORMS = ("code", "paper")


def hint_loss(student_features: Tensor, teacher_features: Tensor) -> Tensor:
    """Romero et al. (2015), FitNets: the student's "guided" layer, passed through a
    regressor, regresses the teacher's "hint" layer.

    ``L = mean over all elements of (r(f_s) - f_t)^2``

    ``student_features`` must already be ``r(f_s)``: the regressor is a trainable module of
    the method (a :class:`kdkit.models.Adaptor`), not part of this pure function, and must
    give the teacher's shape. The paper writes ``1/2 ||r(f_s) - f_t||^2`` and trains in two
    stages (first the guided layers and the regressor on the hint alone, then the whole
    student with KD); RepDistiller and most reruns use this mean squared error in one stage,
    added to the other terms with a weight beta (100 in RepDistiller's CIFAR scripts).
    """
    check_features("student_features", student_features)
    check_features("teacher_features", teacher_features)
    if student_features.shape != teacher_features.shape:
        raise ValueError(f"student_features {tuple(student_features.shape)} and teacher_features "
                         f"{tuple(teacher_features.shape)} must have the same shape: pass the student's "
                         "features through a regressor (kdkit.models.Adaptor) first")
    return F.mse_loss(student_features, teacher_features.detach())


def cosine_feature_loss(student_features: Tensor, teacher_features: Tensor) -> Tensor:
    """One minus the cosine similarity of the two maps, per example, averaged over the batch.

    ``L = mean over examples of (1 - <f_s, f_t> / (||f_s|| ||f_t||))``, each map flattened to
    one vector. Blind to the maps' scale (unlike the MSE of :func:`hint_loss`), so a student
    stage that matches the teacher's *pattern* at another magnitude is not penalised: the
    alternative to MSE the Stagewise KD notebook offers. Shapes must match.
    """
    check_features("student_features", student_features)
    check_features("teacher_features", teacher_features)
    if student_features.shape != teacher_features.shape:
        raise ValueError(f"student_features {tuple(student_features.shape)} and teacher_features "
                         f"{tuple(teacher_features.shape)} must have the same shape")
    cosine = F.cosine_similarity(student_features.flatten(1), teacher_features.detach().flatten(1), dim=1)
    return (1 - cosine).mean()                                       # (B,) -> ()


def attention_map(features: Tensor, *, p: float = 2.0) -> Tensor:
    """Zagoruyko & Komodakis (2017): where a layer "looks", one vector per example.

    ``a(f) = normalise( mean over channels of |f|^p )``, flattened over positions and
    L2-normalised per example: (B, C, *positions) -> (B, positions). The mean over channels
    (the paper sums) cancels in the normalisation.
    """
    check_features("features", features, maps_only=True)
    p = check_positive("p", p)
    a = features.abs().pow(p).mean(dim=1).flatten(1)               # (B, positions)
    return F.normalize(a, dim=1)


def attention_transfer_loss(student_features: Tensor, teacher_features: Tensor, *, p: float = 2.0,
                            form: str = "code") -> Tensor:
    """Attention transfer for one pair of layers (Zagoruyko & Komodakis, ICLR 2017).

    ``form="code"`` (the authors' code, ``szagoruyko/attention-transfer`` ``at_loss``, and
    RepDistiller): ``mean over batch and positions of (a_s - a_t)^2``.
    ``form="paper"`` (Eq. 2): ``1/2 * mean over the batch of || a_s - a_t ||_2``, the norm
    (not squared) of the difference of the normalised attention vectors.

    The two differ in scale by orders of magnitude (the code form divides by the number of
    positions and squares a number below 2), which is why the code's beta is 1000 and why a
    beta tuned for one form is meaningless for the other. Channel counts may differ between
    student and teacher (attention sums them away); if the maps differ in size, the larger is
    average-pooled to the smaller, as RepDistiller does. Sum over layer pairs in the caller.
    """
    check_choice("form", form, AT_FORMS)
    check_features("student_features", student_features, maps_only=True)
    check_features("teacher_features", teacher_features, maps_only=True)
    _check_batch(student_features, teacher_features)
    f_s, f_t = _same_size(student_features, teacher_features.detach())
    a_s, a_t = attention_map(f_s, p=p), attention_map(f_t, p=p)      # (B, positions)
    if form == "code":
        return (a_s - a_t).pow(2).mean()
    return 0.5 * (a_s - a_t).norm(dim=1).mean()


def _check_batch(a: Tensor, b: Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"student and teacher features must hold the same examples: batch {a.shape[0]} "
                         f"vs {b.shape[0]}")


def _same_size(f_s: Tensor, f_t: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool the larger map down to the smaller's positions (same number of dims)."""
    if f_s.dim() != f_t.dim():
        raise ValueError(f"student features {tuple(f_s.shape)} and teacher features {tuple(f_t.shape)} "
                         "must both be 1-D maps (B, C, L) or both 2-D maps (B, C, H, W)")
    size_s, size_t = f_s.shape[2:], f_t.shape[2:]
    if size_s == size_t:
        return f_s, f_t
    pool = F.adaptive_avg_pool1d if f_s.dim() == 3 else F.adaptive_avg_pool2d
    smaller = tuple(min(a, b) for a, b in zip(size_s, size_t))
    return pool(f_s, smaller), pool(f_t, smaller)
