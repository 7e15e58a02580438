"""kdkit.conventions against the libraries' own building blocks, written here with torch.nn
modules as those code bases use them (not with kdkit's losses)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdkit import losses
from kdkit.conventions import CONVENTIONS, conventions_table, kd_loss_as_in

T = 4.0


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return (2 * torch.randn(16, 10, generator=g, dtype=torch.float64),
            3 * torch.randn(16, 10, generator=g, dtype=torch.float64), torch.randint(0, 10, (16,), generator=g))


def soft(z):
    return F.softmax(z / T, dim=1)


def log_soft(z):
    return F.log_softmax(z / T, dim=1)


def test_repdistiller_and_kdkit_agree(batch):
    zs, zt, y = batch
    rep = 0.1 * F.cross_entropy(zs, y) + 0.9 * F.kl_div(log_soft(zs), soft(zt), reduction="sum") * T**2 / 16
    torch.testing.assert_close(kd_loss_as_in("RepDistiller, attention-transfer, mdistiller", zs, zt, y, T=T, alpha=0.9), rep)
    torch.testing.assert_close(kd_loss_as_in("kdkit", zs, zt, y, T=T, alpha=0.9), losses.kd_loss(zs, zt, y, T=T, alpha=0.9))


def test_torchdistill_and_keras_give_alpha_to_the_labels(batch):
    zs, zt, y = batch
    kl = nn.KLDivLoss(reduction="batchmean")(log_soft(zs), soft(zt))
    torchdistill = 0.9 * F.cross_entropy(zs, y) + 0.1 * T**2 * kl
    torch.testing.assert_close(kd_loss_as_in("torchdistill", zs, zt, y, T=T, alpha=0.9), torchdistill)
    torch.testing.assert_close(kd_loss_as_in("Keras example", zs, zt, y, T=T, alpha=0.9), torchdistill)
    # the same alpha means the opposite mixture: torchdistill's 0.1 is kdkit's 0.9
    torch.testing.assert_close(kd_loss_as_in("torchdistill", zs, zt, y, T=T, alpha=0.1),
                               losses.kd_loss(zs, zt, y, T=T, alpha=0.9))
    # and with alpha 0 torchdistill returns the plain KL, without T^2
    torch.testing.assert_close(kd_loss_as_in("torchdistill", zs, zt, y, T=T, alpha=0.0), kl)


def test_kd_lib_default_is_a_mean_squared_error_of_probabilities(batch):
    zs, zt, y = batch
    kd_lib = 0.5 * F.cross_entropy(zs, y) + 0.5 * T * T * nn.MSELoss()(soft(zt), soft(zs))
    torch.testing.assert_close(kd_loss_as_in("KD-Lib", zs, zt, y, T=T, alpha=0.5), kd_lib)


@pytest.mark.filterwarnings("ignore:reduction")          # PyTorch's warning about "mean" is the point here
def test_nn_kldivloss_default_divides_by_the_number_of_classes(batch):
    zs, zt, y = batch
    default = 0.1 * F.cross_entropy(zs, y) + 0.9 * T * T * nn.KLDivLoss()(log_soft(zs), soft(zt))
    torch.testing.assert_close(kd_loss_as_in("nn.KLDivLoss() default", zs, zt, y, T=T, alpha=0.9), default)
    kl = losses.distillation_kl(zs, zt, T=T)
    torch.testing.assert_close(default - 0.1 * F.cross_entropy(zs, y), 0.9 * kl / 10)


def test_the_table_has_one_row_per_convention_and_rejects_unknown_ones(batch):
    zs, zt, y = batch
    table = conventions_table(zs, zt, y, T=T, alpha=0.9).splitlines()
    assert len(table) == 1 + len(CONVENTIONS)
    assert all(row.startswith(name) for row, name in zip(table[1:], CONVENTIONS))
    with pytest.raises(KeyError, match="convention"):
        kd_loss_as_in("fastai", zs, zt, y, T=T, alpha=0.5)
