"""kdkit.losses against independent closed forms written here with plain torch ops.

Every reference below is written from the papers' formulas (cited in each loss's docstring),
not by calling kdkit, so a wrong reduction, a missing T^2 or a leaked teacher gradient
makes a test fail. References are computed in float64 to keep round-off out of the way.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdkit import losses
from kdkit.validation import tensor_checks_done

B, K = 8, 10
DOUBLE = torch.float64


# --------------------------------------------------------------------------------------
# Independent references (plain softmax / log / sum)
# --------------------------------------------------------------------------------------

def ref_probs(z, T=1.0):
    return torch.softmax(z / T, dim=1)


def ref_ce(zs, y):
    """mean_b -log softmax(z_s)[y_b]"""
    return -torch.log(ref_probs(zs))[torch.arange(len(y)), y].mean()


def ref_kl(p, q):
    """Per-example KL(p || q) summed over classes, averaged over the batch."""
    return (p * (torch.log(p) - torch.log(q))).sum(dim=1).mean()


def ref_kd(zs, zt, y, T, alpha):
    """Hinton et al. 2015: (1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T), batchmean."""
    soft = T * T * ref_kl(ref_probs(zt, T), ref_probs(zs, T))
    return (1 - alpha) * ref_ce(zs, y) + alpha * soft


def ref_entropy(p):
    return -(p * torch.log(p)).sum(dim=1)


def ref_virtual_teacher(y, num_classes, a, T):
    """Tf-KD_reg: p_d(k) = a if k == y else (1 - a)/(K - 1), then softmax(p_d / T)."""
    p_d = torch.full((len(y), num_classes), (1 - a) / (num_classes - 1), dtype=DOUBLE)
    p_d[torch.arange(len(y)), y] = a
    return ref_probs(p_d, T)


def grad_of(loss, wrt):
    (g,) = torch.autograd.grad(loss, wrt)
    return g


def logits(rng, *shape, scale=2.0, dtype=DOUBLE, requires_grad=False):
    z = (torch.randn(*shape, generator=rng) * scale).to(dtype)
    return z.requires_grad_(requires_grad)


def labels(rng, batch=B, num_classes=K):
    return torch.randint(0, num_classes, (batch,), generator=rng)


def close(a, b, *, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, check_dtype=False)


# --------------------------------------------------------------------------------------
# Hinton KD: values and gradients
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 20.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_kd_loss_value_and_gradient_match_independent_formula(rng, T, alpha):
    zs, zt, y = logits(rng, B, K, requires_grad=True), logits(rng, B, K), labels(rng)
    got = losses.kd_loss(zs, zt, y, T=T, alpha=alpha)
    expected = ref_kd(zs, zt, y, T, alpha)
    close(got, expected)
    close(grad_of(got, zs), grad_of(expected, zs))


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 0.2)])
def test_kd_loss_gradient_matches_hinton_closed_form(rng, T, alpha):
    """dL/dz_s = [(1 - a)(p_s - onehot(y)) + a T (p_s^T - p_t^T)] / B   (Hinton 2015, eq. 2)."""
    zs, zt, y = logits(rng, B, K, requires_grad=True), logits(rng, B, K), labels(rng)
    got = grad_of(losses.kd_loss(zs, zt, y, T=T, alpha=alpha), zs)
    with torch.no_grad():
        onehot = F.one_hot(y, K).to(DOUBLE)
        expected = ((1 - alpha) * (ref_probs(zs) - onehot)
                    + alpha * T * (ref_probs(zs, T) - ref_probs(zt, T))) / B
    close(got, expected)


@pytest.mark.parametrize("T, alpha", [(0.5, 0.3), (4.0, 0.9)])
def test_kd_loss_hand_written_gradient_passes_gradcheck(rng, T, alpha):
    """kd_loss's backward is written out by hand: compare it with finite differences,
    also when the loss is scaled and when the logits come out of a layer."""
    zs, zt, y = logits(rng, 6, 4, requires_grad=True), logits(rng, 6, 4), labels(rng, 6, 4)
    assert torch.autograd.gradcheck(lambda z: 3.0 * losses.kd_loss(z, zt, y, T=T, alpha=alpha), (zs,))
    layer = torch.nn.Linear(4, 4).to(DOUBLE)
    assert torch.autograd.gradcheck(lambda z: losses.kd_loss(layer(z), zt, y, T=T, alpha=alpha), (zs,))


def test_kd_loss_alpha_zero_is_cross_entropy(rng):
    zs, zt, y = logits(rng, B, K, requires_grad=True), logits(rng, B, K), labels(rng)
    got = losses.kd_loss(zs, zt, y, T=4.0, alpha=0.0)
    expected = F.cross_entropy(zs, y)
    close(got, expected)
    close(grad_of(got, zs), grad_of(expected, zs))


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # our nn.KLDivLoss() below
@pytest.mark.parametrize("T", [1.0, 3.0, 10.0])
def test_kd_loss_alpha_one_is_T2_batchmean_kl(rng, T):
    zs, zt, y = logits(rng, B, K, requires_grad=True), logits(rng, B, K), labels(rng)
    got = losses.kd_loss(zs, zt, y, T=T, alpha=1.0)
    expected = T * T * F.kl_div(F.log_softmax(zs / T, dim=1), F.softmax(zt / T, dim=1),
                                reduction="batchmean")
    close(got, expected)
    close(grad_of(got, zs), grad_of(expected, zs))
    # ... which is NOT nn.KLDivLoss()'s default "mean": that one is K times smaller.
    mean_reduced = T * T * torch.nn.KLDivLoss()(F.log_softmax(zs / T, dim=1), F.softmax(zt / T, dim=1))
    close(got.detach() / mean_reduced.detach(), torch.tensor(float(K), dtype=DOUBLE))


def test_distillation_kl_is_zero_for_identical_logits_and_positive_otherwise(rng):
    z = logits(rng, B, K)
    assert float(losses.distillation_kl(z, z.clone(), T=3.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(losses.distillation_kl(z, logits(rng, B, K), T=3.0)) > 0


def test_soft_targets_is_softened_softmax(rng):
    z = logits(rng, B, K)
    for T in (0.5, 1.0, 7.0):
        p = losses.soft_targets(z, T=T)
        close(p, torch.exp(z / T) / torch.exp(z / T).sum(dim=1, keepdim=True))
        close(p.sum(dim=1), torch.ones(B, dtype=DOUBLE))
    # larger T: flatter distribution (higher entropy)
    assert bool((ref_entropy(losses.soft_targets(z, T=8.0))
                 > ref_entropy(losses.soft_targets(z, T=1.0))).all())


# --------------------------------------------------------------------------------------
# Soft cross-entropy vs KL: differ by T^2 * teacher entropy, same gradients
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 20.0])
def test_soft_cross_entropy_minus_kl_is_T2_teacher_entropy(rng, T):
    zs, zt = logits(rng, B, K, requires_grad=True), logits(rng, B, K)
    sce = losses.soft_cross_entropy(zs, zt, T=T)
    kl = losses.distillation_kl(zs, zt, T=T)
    teacher_entropy = ref_entropy(ref_probs(zt, T)).mean()
    close(sce - kl, T * T * teacher_entropy)
    # its value against the formula T^2 mean_b(-sum_k p_t log p_s)
    close(sce, T * T * -(ref_probs(zt, T) * torch.log(ref_probs(zs, T))).sum(dim=1).mean())
    close(grad_of(sce, zs), grad_of(kl, zs))


# --------------------------------------------------------------------------------------
# Uniform teacher == label smoothing (Yuan et al. 2020)
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35, 1.0])
def test_uniform_teacher_soft_cross_entropy_is_label_smoothing(rng, eps):
    zs, y = logits(rng, B, K, requires_grad=True), labels(rng)
    uniform_teacher = torch.zeros(B, K, dtype=DOUBLE)
    mix = (1 - eps) * F.cross_entropy(zs, y) + eps * losses.soft_cross_entropy(zs, uniform_teacher, T=1.0)
    ls = losses.label_smoothing_loss(zs, y, smoothing=eps)
    torch_ls = F.cross_entropy(zs, y, label_smoothing=eps)
    close(mix, torch_ls)
    close(ls, torch_ls)
    close(grad_of(ls, zs), grad_of(torch_ls, zs))


@pytest.mark.parametrize("eps", [0.1, 0.5, 0.9])
def test_kd_with_uniform_teacher_is_label_smoothing_minus_constant(rng, eps):
    zs, y = logits(rng, B, K, requires_grad=True), labels(rng)
    uniform_teacher = torch.zeros(B, K, dtype=DOUBLE)
    kd = losses.kd_loss(zs, uniform_teacher, y, T=1.0, alpha=eps)
    ls = losses.label_smoothing_loss(zs, y, smoothing=eps)
    close(kd, ls - eps * math.log(K))
    close(grad_of(kd, zs), grad_of(ls, zs))


# --------------------------------------------------------------------------------------
# No gradient ever reaches a teacher / peer
# --------------------------------------------------------------------------------------

def _teacher_leak_cases():
    return {
        "kd_loss": lambda zs, zts, y: losses.kd_loss(zs, zts[0], y, T=2.0, alpha=0.5),
        "distillation_kl": lambda zs, zts, y: losses.distillation_kl(zs, zts[0], T=2.0),
        "logit_l2_loss": lambda zs, zts, y: losses.logit_l2_loss(zs, zts[0]),
        "centred_logit_mse": lambda zs, zts, y: losses.centred_logit_mse(zs, zts[0]),
        "soft_cross_entropy": lambda zs, zts, y: losses.soft_cross_entropy(zs, zts[0], T=2.0),
        "kl_to_target": lambda zs, zts, y: losses.kl_to_target(zs, torch.softmax(zts[0], 1), T=2.0),
        "mutual_pairwise": lambda zs, zts, y: losses.mutual_learning_loss(zs, zts, y, target="pairwise"),
        "mutual_ensemble": lambda zs, zts, y: losses.mutual_learning_loss(zs, zts, y, target="ensemble"),
        "multi_teacher": lambda zs, zts, y: losses.multi_teacher_kd_loss(zs, zts, y, T=2.0),
    }


@pytest.mark.parametrize("case", sorted(_teacher_leak_cases()))
def test_no_gradient_reaches_the_teacher(rng, case):
    zs = logits(rng, B, K, requires_grad=True)
    teachers = [logits(rng, B, K, requires_grad=True) for _ in range(2)]
    loss = _teacher_leak_cases()[case](zs, teachers, labels(rng))
    loss.backward()
    assert zs.grad is not None and bool(zs.grad.abs().sum() > 0)
    for teacher in teachers:
        assert teacher.grad is None, f"{case} leaked a gradient into the teacher's logits"


# --------------------------------------------------------------------------------------
# Temperature: the T^2 factor, the large-T limit
# --------------------------------------------------------------------------------------

def _soft_grad_norm(zs, zt, T, *, with_T2: bool):
    zs = zs.detach().clone().requires_grad_(True)
    loss = losses.distillation_kl(zs, zt, T=T)
    if not with_T2:
        loss = loss / (T * T)
    return float(grad_of(loss, zs).norm())


def test_without_T2_the_soft_gradient_falls_as_one_over_T_squared(rng):
    zs, zt = logits(rng, 16, K, dtype=torch.float32), logits(rng, 16, K, dtype=torch.float32)
    ratio = _soft_grad_norm(zs, zt, 10.0, with_T2=False) / _soft_grad_norm(zs, zt, 20.0, with_T2=False)
    assert ratio == pytest.approx(4.0, rel=0.10)
    # with T^2 (what kdkit returns) the gradient keeps its size as T changes
    ratio_t2 = _soft_grad_norm(zs, zt, 10.0, with_T2=True) / _soft_grad_norm(zs, zt, 20.0, with_T2=True)
    assert ratio_t2 == pytest.approx(1.0, rel=0.10)


def test_centred_logit_mse_closed_form(rng):
    zs, zt = logits(rng, B, K, requires_grad=True), logits(rng, B, K)
    got = losses.centred_logit_mse(zs, zt)
    d = (zs - zs.mean(1, keepdim=True)) - (zt - zt.mean(1, keepdim=True))
    close(got, (d ** 2).sum() / (2 * K * B))
    # gradient: (centred difference) / (K B)
    close(grad_of(got, zs), d.detach() / (K * B))


@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-3), (torch.float32, 2e-2)])
def test_large_T_distillation_approaches_centred_logit_mse(rng, dtype, rel):
    """Hinton 2015, 2.1: at high T, T^2 KL -> 1/(2K) ||centred z_s - centred z_t||^2.

    float64 shows the limit itself (error O(|z|/T)); float32 loses about 1% to the
    cancellation inside KL when all probabilities are ~1/K, hence its looser bound.
    """
    zs, zt = logits(rng, B, K, dtype=dtype, requires_grad=True), logits(rng, B, K, dtype=dtype)
    kd = losses.distillation_kl(zs, zt, T=1000.0)
    mse = losses.centred_logit_mse(zs, zt)
    assert abs(kd.item() - mse.item()) / mse.item() < rel
    g_kd, g_mse = grad_of(kd, zs), grad_of(mse, zs)
    assert float((g_kd - g_mse).norm() / g_mse.norm()) < 1e-2


# --------------------------------------------------------------------------------------
# Numerical stability: T from 0.05 to 1000, logits up to +-1e4
# --------------------------------------------------------------------------------------

def _all_losses(zs, zt, zt2, y, T):
    return {
        "soft_targets": (losses.soft_targets(zs, T=T) * torch.arange(K, dtype=zs.dtype)).sum(),
        "cross_entropy": losses.cross_entropy(zs, y),
        "distillation_kl": losses.distillation_kl(zs, zt, T=T),
        "kl_to_target": losses.kl_to_target(zs, losses.soft_targets(zt, T=T), T=T),
        "soft_cross_entropy": losses.soft_cross_entropy(zs, zt, T=T),
        "kd_loss": losses.kd_loss(zs, zt, y, T=T, alpha=0.5),
        "logit_l2_loss": losses.logit_l2_loss(zs, zt),
        "centred_logit_mse": losses.centred_logit_mse(zs, zt),
        "label_smoothing_loss": losses.label_smoothing_loss(zs, y, smoothing=0.1),
        "tfkd_paper": losses.tfkd_reg_loss(zs, y, T=T, mode="paper"),
        "tfkd_code": losses.tfkd_reg_loss(zs, y, T=T, mode="code", multiplier=100.0),
        "mutual_pairwise": losses.mutual_learning_loss(zs, [zt, zt2], y, T=T),
        "mutual_ensemble": losses.mutual_learning_loss(zs, [zt, zt2], y, T=T, target="ensemble"),
        "multi_teacher": losses.multi_teacher_kd_loss(zs, [zt, zt2], y, T=T, weights=[1.0, 3.0]),
    }


@pytest.mark.parametrize("T", [0.05, 1.0, 1000.0])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_every_loss_and_gradient_is_finite(rng, T, scale):
    def make():  # uniform in [-scale, scale], float32 as in training
        return ((torch.rand(B, K, generator=rng) * 2 - 1) * scale)

    zs = make()
    zs[0] = torch.linspace(-scale, scale, K)      # extreme, sorted rows: one-hot at small T
    zt, zt2 = make(), make()
    zt[0] = -zs[0]                                 # the teacher disagrees completely
    y = labels(rng)
    y[0] = 0                                       # the label the student finds least likely
    for name in _all_losses(zs, zt, zt2, y, T):
        student = zs.clone().requires_grad_(True)
        value = _all_losses(student, zt, zt2, y, T)[name]
        (gradient,) = torch.autograd.grad(value, student)
        assert bool(torch.isfinite(value)), f"{name} is not finite at T={T}, scale={scale}"
        assert bool(torch.isfinite(gradient).all()), f"{name}'s gradient is not finite at T={T}, scale={scale}"


# --------------------------------------------------------------------------------------
# Ba & Caruana: L2 on logits
# --------------------------------------------------------------------------------------

def test_logit_l2_loss_closed_form(rng):
    zs, zt = logits(rng, B, K, requires_grad=True), logits(rng, B, K)
    got = losses.logit_l2_loss(zs, zt)
    close(got, ((zs - zt) ** 2).sum() / (2 * B))
    close(grad_of(got, zs), (zs - zt).detach() / B)
    # hand-checked tiny case: one example, difference (1, 2) -> 1/2 (1 + 4) = 2.5
    small = losses.logit_l2_loss(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2))
    assert float(small) == pytest.approx(2.5)


# --------------------------------------------------------------------------------------
# Tf-KD_reg: the virtual teacher, paper and code modes
# --------------------------------------------------------------------------------------

def test_virtual_teacher_rows_are_distributions_with_the_right_values(rng):
    y = labels(rng, 6, 5)
    p = losses.virtual_teacher_probs(y, 5, correct_prob=0.8, T=2.0)
    assert p.shape == (6, 5)
    close(p.sum(dim=1), torch.ones(6), rtol=1e-6, atol=1e-6)
    close(p, ref_virtual_teacher(y, 5, 0.8, 2.0), rtol=1e-6, atol=1e-7)
    assert bool((p.argmax(dim=1) == y).all())


def test_virtual_teacher_is_nearly_uniform_at_T20_K100():
    """a = 0.99, T = 20, K = 100: exp(a/T) / (exp(a/T) + 99 exp((1-a)/99/T)) ~ 1.05%."""
    a, T, num_classes = 0.99, 20.0, 100
    other = (1 - a) / (num_classes - 1)
    expected = math.exp(a / T) / (math.exp(a / T) + (num_classes - 1) * math.exp(other / T))
    assert expected == pytest.approx(0.0105, abs=5e-5)
    p = losses.virtual_teacher_probs(torch.tensor([3, 97]), num_classes, correct_prob=a, T=T)
    assert p[0, 3].item() == pytest.approx(expected, rel=1e-5)
    assert p[1, 97].item() == pytest.approx(expected, rel=1e-5)
    assert p[0, 0].item() == pytest.approx((1 - expected) / 99, rel=1e-5)


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("T, alpha, a", [(20.0, 0.5, 0.9), (4.0, 0.7, 0.99), (1.0, 1.0, 0.6)])
def test_tfkd_reg_paper_mode_matches_the_paper_equation(rng, num_classes, T, alpha, a):
    zs, y = logits(rng, B, num_classes, requires_grad=True), labels(rng, B, num_classes)
    got = losses.tfkd_reg_loss(zs, y, T=T, alpha=alpha, correct_prob=a, mode="paper")
    q = ref_virtual_teacher(y, num_classes, a, T)
    expected = (1 - alpha) * ref_ce(zs, y) + alpha * T * T * ref_kl(q, ref_probs(zs, T))
    # the virtual teacher is built in float32 inside kdkit, hence the 1e-6 tolerance
    close(got, expected, rtol=1e-6, atol=1e-7)
    close(grad_of(got, zs), grad_of(expected, zs), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("T, alpha, multiplier", [(20.0, 0.5, 1.0), (4.0, 0.9, 100.0)])
def test_tfkd_reg_code_mode_matches_the_official_code(rng, num_classes, T, alpha, multiplier):
    """Official code: nn.KLDivLoss() ('mean' = / (B K)), student not softened, no T^2, a multiplier."""
    a = 0.99
    zs, y = logits(rng, B, num_classes, requires_grad=True), labels(rng, B, num_classes)
    got = losses.tfkd_reg_loss(zs, y, T=T, alpha=alpha, correct_prob=a, mode="code",
                               multiplier=multiplier)
    q = ref_virtual_teacher(y, num_classes, a, T)
    kl_mean = (q * (torch.log(q) - torch.log(ref_probs(zs)))).sum() / (B * num_classes)
    expected = (1 - alpha) * ref_ce(zs, y) + alpha * multiplier * kl_mean
    close(got, expected, rtol=1e-6, atol=1e-7)
    close(grad_of(got, zs), grad_of(expected, zs), rtol=1e-5, atol=1e-7)
    # and the two modes are different losses
    paper = losses.tfkd_reg_loss(zs, y, T=T, alpha=alpha, correct_prob=a, mode="paper")
    assert abs(paper.item() - got.item()) > 1e-6


# --------------------------------------------------------------------------------------
# Deep mutual learning, multi-teacher KD
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1.0, 3.0])
@pytest.mark.parametrize("n_peers", [1, 3])
def test_mutual_learning_pairwise_matches_formula(rng, T, n_peers):
    zs, y = logits(rng, B, K, requires_grad=True), labels(rng)
    peers = [logits(rng, B, K) for _ in range(n_peers)]
    got = losses.mutual_learning_loss(zs, peers, y, T=T, target="pairwise")
    mimicry = sum(T * T * ref_kl(ref_probs(z, T), ref_probs(zs, T)) for z in peers) / n_peers
    expected = ref_ce(zs, y) + mimicry
    close(got, expected)
    close(grad_of(got, zs), grad_of(expected, zs))


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_mutual_learning_ensemble_matches_formula(rng, T):
    zs, y = logits(rng, B, K, requires_grad=True), labels(rng)
    peers = [logits(rng, B, K) for _ in range(3)]
    got = losses.mutual_learning_loss(zs, peers, y, T=T, target="ensemble")
    q = sum(ref_probs(z, T) for z in peers) / 3
    expected = ref_ce(zs, y) + T * T * ref_kl(q, ref_probs(zs, T))
    close(got, expected)
    close(grad_of(got, zs), grad_of(expected, zs))
    # with several peers the ensemble target is a different loss from the pairwise one
    pairwise = losses.mutual_learning_loss(zs, peers, y, T=T, target="pairwise")
    assert pairwise.item() > got.item()  # Jensen: mean of KLs >= KL of the mean target


def test_multi_teacher_with_one_teacher_equals_kd_loss(rng):
    zs, zt, y = logits(rng, B, K, requires_grad=True), logits(rng, B, K), labels(rng)
    got = losses.multi_teacher_kd_loss(zs, [zt], y, T=3.0, alpha=0.7)
    expected = losses.kd_loss(zs, zt, y, T=3.0, alpha=0.7)
    close(got, expected)
    close(grad_of(got, zs), grad_of(expected, zs))


def test_multi_teacher_weights_are_respected(rng):
    T, alpha = 2.0, 0.6
    zs, y = logits(rng, B, K, requires_grad=True), labels(rng)
    teachers = [logits(rng, B, K) for _ in range(3)]
    weights = [0.5, 2.0, 1.5]
    got = losses.multi_teacher_kd_loss(zs, teachers, y, T=T, alpha=alpha, weights=weights)
    q = sum(w * ref_probs(z, T) for w, z in zip(weights, teachers)) / sum(weights)
    expected = (1 - alpha) * ref_ce(zs, y) + alpha * T * T * ref_kl(q, ref_probs(zs, T))
    close(got, expected)
    close(grad_of(got, zs), grad_of(expected, zs))
    # a zero weight removes that teacher; weights are relative (scaling them changes nothing)
    only_second = losses.multi_teacher_kd_loss(zs, teachers, y, T=T, alpha=alpha, weights=[0, 1, 0])
    close(only_second, losses.kd_loss(zs, teachers[1], y, T=T, alpha=alpha))
    scaled = losses.multi_teacher_kd_loss(zs, teachers, y, T=T, alpha=alpha,
                                          weights=[10 * w for w in weights])
    close(scaled, got)
    # uniform weights (None) differ from these weights
    uniform = losses.multi_teacher_kd_loss(zs, teachers, y, T=T, alpha=alpha)
    assert abs(uniform.item() - got.item()) > 1e-6


def test_averaged_soft_targets_is_weighted_mean_of_softmaxes(rng):
    teachers = [logits(rng, B, K) for _ in range(2)]
    got = losses.averaged_soft_targets(teachers, T=2.0, weights=[1.0, 3.0])
    expected = 0.25 * ref_probs(teachers[0], 2.0) + 0.75 * ref_probs(teachers[1], 2.0)
    close(got, expected)


def test_kd_to_the_mixture_has_the_gradient_of_the_mixture_of_kd_losses(rng):
    """KL(q || p_s) and sum_j mu_j KL(p_j || p_s) differ by a constant of the teachers, so
    with q = sum_j mu_j p_j (weights summing to 1) their gradients in z_s are equal."""
    T, alpha, weights = 3.0, 0.8, [0.2, 0.5, 0.3]
    zs, y = logits(rng, B, K, requires_grad=True), labels(rng)
    teachers = [logits(rng, B, K) for _ in range(3)]
    mixture = losses.multi_teacher_kd_loss(zs, teachers, y, T=T, alpha=alpha, weights=weights)
    each = sum(w * losses.kd_loss(zs, z, y, T=T, alpha=alpha) for w, z in zip(weights, teachers))
    close(grad_of(mixture, zs), grad_of(each, zs))
    assert each.item() > mixture.item()   # the values differ: the mixture's KL is the smaller (Jensen)


def test_logit_averaging_is_a_different_target(rng):
    T = 2.0
    zs, y = logits(rng, B, K, requires_grad=True), labels(rng)
    teachers = [logits(rng, B, K) for _ in range(2)]
    got = losses.multi_teacher_kd_loss(zs, teachers, y, T=T, alpha=1.0, weights=[1.0, 3.0], combine="logits")
    mean_logits = (teachers[0] + 3 * teachers[1]) / 4
    expected = T * T * ref_kl(ref_probs(mean_logits, T), ref_probs(zs, T))
    close(got, expected)
    close(grad_of(got, zs), grad_of(expected, zs))
    # softened, the mean of logits is the normalised geometric mean of the softened probabilities
    geometric = (ref_probs(teachers[0], T) ** 0.25) * (ref_probs(teachers[1], T) ** 0.75)
    close(losses.soft_targets(losses.averaged_logits(teachers, weights=[1.0, 3.0]), T=T),
          geometric / geometric.sum(dim=1, keepdim=True))
    probabilities = losses.multi_teacher_kd_loss(zs, teachers, y, T=T, alpha=1.0, weights=[1.0, 3.0])
    assert abs(probabilities.item() - got.item()) > 1e-4
    # with one teacher, both are Hinton KD
    close(losses.multi_teacher_kd_loss(zs, teachers[:1], y, T=T, alpha=0.5, combine="logits"),
          losses.kd_loss(zs, teachers[0], y, T=T, alpha=0.5))


def test_per_example_weights(rng):
    T = 2.0
    teachers = [logits(rng, B, K) for _ in range(3)]
    y = labels(rng)
    mu = torch.rand(3, B, generator=rng, dtype=DOUBLE) + 0.1
    got = losses.averaged_soft_targets(teachers, T=T, weights=mu)
    for b in range(B):
        expected = sum(mu[j, b] * ref_probs(teachers[j], T)[b] for j in range(3)) / mu[:, b].sum()
        close(got[b], expected)
    # a weight of zero for every teacher but one on an example: that teacher's target there
    only = torch.zeros(3, B)
    only[torch.arange(B) % 3, torch.arange(B)] = 1.0
    picked = losses.averaged_soft_targets(teachers, T=T, weights=only)
    for b in range(B):
        close(picked[b], ref_probs(teachers[b % 3], T)[b])
    # confidence weights: each teacher's probability of the true class, detached
    confident = losses.confidence_weights(teachers, y)
    assert confident.shape == (3, B) and not confident.requires_grad
    for j in range(3):
        close(confident[j], ref_probs(teachers[j])[torch.arange(B), y])


def test_per_example_weights_must_have_one_per_teacher_and_example(rng):
    zs, zt, y = logits(rng, B, K), logits(rng, B, K), labels(rng)
    for weights in (torch.ones(2, B + 1), torch.ones(3, B), torch.zeros(2, B), -torch.ones(2, B)):
        with pytest.raises(ValueError, match="weights"):
            losses.multi_teacher_kd_loss(zs, [zt, zt], y, weights=weights)
    with pytest.raises(KeyError, match="combine"):
        losses.multi_teacher_kd_loss(zs, [zt], y, combine="median")


# --------------------------------------------------------------------------------------
# Bad input: a clear error naming the argument
# --------------------------------------------------------------------------------------

def _good(rng):
    return logits(rng, B, K), logits(rng, B, K), labels(rng)


@pytest.mark.parametrize("T", [0, 0.0, -1.0, float("nan"), float("inf"), "4", None, True])
def test_bad_temperature_is_rejected(rng, T):
    zs, zt, y = _good(rng)
    calls = [
        lambda: losses.kd_loss(zs, zt, y, T=T),
        lambda: losses.distillation_kl(zs, zt, T=T),
        lambda: losses.soft_cross_entropy(zs, zt, T=T),
        lambda: losses.soft_targets(zs, T=T),
        lambda: losses.kl_to_target(zs, ref_probs(zt), T=T),
        lambda: losses.tfkd_reg_loss(zs, y, T=T),
        lambda: losses.mutual_learning_loss(zs, [zt], y, T=T),
        lambda: losses.mutual_learning_loss(zs, [zt], y, T=T, target="ensemble"),
        lambda: losses.multi_teacher_kd_loss(zs, [zt], y, T=T),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="temperature T"):
            call()


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5", None])
def test_bad_alpha_is_rejected(rng, alpha):
    zs, zt, y = _good(rng)
    for call in (lambda: losses.kd_loss(zs, zt, y, alpha=alpha),
                 lambda: losses.tfkd_reg_loss(zs, y, alpha=alpha),
                 lambda: losses.multi_teacher_kd_loss(zs, [zt], y, alpha=alpha)):
        with pytest.raises(ValueError, match="alpha"):
            call()


def test_bad_smoothing_multiplier_and_correct_prob_are_rejected(rng):
    zs, zt, y = _good(rng)
    with pytest.raises(ValueError, match="smoothing"):
        losses.label_smoothing_loss(zs, y, smoothing=1.5)
    with pytest.raises(ValueError, match="multiplier"):
        losses.tfkd_reg_loss(zs, y, mode="code", multiplier=0.0)
    with pytest.raises(ValueError, match="correct_prob"):
        losses.tfkd_reg_loss(zs, y, correct_prob=1.2)
    with pytest.raises(ValueError, match="num_classes"):
        losses.virtual_teacher_probs(y, 1, correct_prob=0.9, T=1.0)


@pytest.mark.parametrize("teacher_shape", [(B, K - 1), (B - 1, K), (B, K, 1)])
def test_mismatched_shapes_are_rejected(rng, teacher_shape):
    zs, y = logits(rng, B, K), labels(rng)
    zt = torch.randn(*teacher_shape, dtype=DOUBLE)
    for call in (lambda: losses.kd_loss(zs, zt, y),
                 lambda: losses.distillation_kl(zs, zt, T=2.0),
                 lambda: losses.soft_cross_entropy(zs, zt, T=2.0),
                 lambda: losses.logit_l2_loss(zs, zt),
                 lambda: losses.centred_logit_mse(zs, zt),
                 lambda: losses.mutual_learning_loss(zs, [zt], y),
                 lambda: losses.multi_teacher_kd_loss(zs, [zt], y)):
        with pytest.raises(ValueError, match="teacher|peer_logits"):
            call()


@pytest.mark.parametrize("peer_shape", [(B, K - 1), (B - 1, K)])
def test_mismatched_peer_in_ensemble_mutual_learning_names_the_peers(rng, peer_shape):
    # The message must name the caller's argument (peer_logits), not an internal one.
    zs, y = logits(rng, B, K), labels(rng)
    peer = torch.randn(*peer_shape, dtype=DOUBLE)
    with pytest.raises(ValueError, match=r"peer_logits\[0\]"):
        losses.mutual_learning_loss(zs, [peer], y, target="ensemble")


def test_mismatched_teachers_in_a_list_are_rejected(rng):
    zs, zt, y = _good(rng)
    with pytest.raises(ValueError, match=r"teacher_logits\[1\]"):
        losses.multi_teacher_kd_loss(zs, [zt, zt[:, :5]], y)


def test_bad_student_logits_are_rejected(rng):
    zs, zt, y = _good(rng)
    with pytest.raises(ValueError, match="student_logits"):
        losses.kd_loss(zs[:, :1], zt[:, :1], y)                  # one class only
    with pytest.raises(ValueError, match="student_logits"):
        losses.cross_entropy(zs[0], y)                           # 1-D
    with pytest.raises(ValueError, match="student_logits"):
        losses.logit_l2_loss(zs.long(), zt.long())               # integer logits
    with pytest.raises(TypeError, match="student_logits"):
        losses.cross_entropy(zs.tolist(), y)                     # not a tensor
    with pytest.raises(ValueError, match="target_probs"):
        losses.kl_to_target(zs, 2 * ref_probs(zt))               # rows sum to 2


@pytest.mark.parametrize("bad", ["out_of_range", "negative", "wrong_length", "float", "2d"])
def test_bad_labels_are_rejected(rng, bad):
    zs, zt, y = _good(rng)
    y = {"out_of_range": torch.full((B,), K), "negative": torch.full((B,), -1),
         "wrong_length": y[:-1], "float": y.double(), "2d": y[:, None]}[bad]
    for call in (lambda: losses.cross_entropy(zs, y),
                 lambda: losses.kd_loss(zs, zt, y),
                 lambda: losses.label_smoothing_loss(zs, y, smoothing=0.1),
                 lambda: losses.tfkd_reg_loss(zs, y),
                 lambda: losses.mutual_learning_loss(zs, [zt], y),
                 lambda: losses.multi_teacher_kd_loss(zs, [zt], y)):
        with pytest.raises(ValueError, match="labels"):
            call()


def test_int32_labels_are_rejected_with_a_message_naming_them(rng):
    # F.cross_entropy needs int64 targets; kdkit refuses int32 up front rather than guess.
    zs, zt, y = _good(rng)
    y32 = y.int()
    for call in (lambda y: losses.cross_entropy(zs, y),
                 lambda y: losses.kd_loss(zs, zt, y),
                 lambda y: losses.tfkd_reg_loss(zs, y)):
        with pytest.raises(ValueError, match="labels must be an int64"):
            call(y32)


@pytest.mark.parametrize("which", ["student", "teacher"])
@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits_are_rejected(rng, which, bad_value):
    zs, zt, y = _good(rng)
    (zs if which == "student" else zt)[2, 3] = bad_value
    name = f"{which}_logits"
    for call in (lambda: losses.kd_loss(zs, zt, y),
                 lambda: losses.distillation_kl(zs, zt, T=2.0),
                 lambda: losses.soft_cross_entropy(zs, zt, T=2.0),
                 lambda: losses.logit_l2_loss(zs, zt),
                 lambda: losses.centred_logit_mse(zs, zt)):
        with pytest.raises(ValueError, match=f"{name} contains NaN or inf"):
            call()
    with pytest.raises(ValueError, match="logits"):
        losses.multi_teacher_kd_loss(zs, [zt], y)


def test_unknown_modes_are_key_errors_listing_the_choices(rng):
    zs, zt, y = _good(rng)
    with pytest.raises(KeyError, match="mode.*code, paper"):
        losses.tfkd_reg_loss(zs, y, mode="official")
    with pytest.raises(KeyError, match="target.*ensemble, ensemble_logits, pairwise"):
        losses.mutual_learning_loss(zs, [zt], y, target="mean")


def test_empty_teacher_lists_and_bad_weights_are_rejected(rng):
    zs, zt, y = _good(rng)
    with pytest.raises(ValueError, match="peer_logits"):
        losses.mutual_learning_loss(zs, [], y)
    with pytest.raises(ValueError, match="teacher_logits"):
        losses.multi_teacher_kd_loss(zs, [], y)
    for weights in ([1.0], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="weights"):
            losses.multi_teacher_kd_loss(zs, [zt, zt], y, weights=weights)


# --------------------------------------------------------------------------------------
# validation.tensor_checks_done
# --------------------------------------------------------------------------------------

def test_tensor_checks_done_skips_tensor_checks_only_inside_the_block(rng):
    zs, zt, y = _good(rng)
    zs[0, 0] = float("nan")
    with pytest.raises(ValueError, match="student_logits contains NaN"):
        losses.kd_loss(zs, zt, y)
    with tensor_checks_done():
        value = losses.kd_loss(zs, zt, y)           # not rejected: the caller checked already
        assert bool(torch.isnan(value))
        with pytest.raises(ValueError, match="temperature T"):
            losses.kd_loss(zs, zt, y, T=0.0)       # scalar checks always run
    with pytest.raises(ValueError, match="student_logits contains NaN"):
        losses.kd_loss(zs, zt, y)                   # back on after the block


def test_tensor_checks_come_back_after_an_exception_inside_the_block(rng):
    zs, zt, y = _good(rng)
    with pytest.raises(RuntimeError):
        with tensor_checks_done():
            raise RuntimeError("boom")
    zs[0, 0] = float("inf")
    with pytest.raises(ValueError, match="student_logits"):
        losses.kd_loss(zs, zt, y)
