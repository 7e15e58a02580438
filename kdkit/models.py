"""Small models that train in seconds on a laptop CPU.

* :class:`MLP` - fully connected; with one wide hidden layer and an optional linear
  bottleneck it is Ba & Caruana's (2014) shallow mimic net.
* :class:`CNN` - a few strided convolutions, 1-D (MNIST-1D) or 2-D (images).
* :class:`ResNet` - a small residual net whose stages are named ``stages.0``,
  ``stages.1``, ... so feature-based losses can read stage outputs through forward hooks
  (:func:`capture_features`) without changing the model.

All models take a batch of inputs shaped like a :class:`kdkit.data.Split`'s ``x`` and
return logits (B, K).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from typing import Iterator, Sequence

import torch
from torch import nn

from kdkit.validation import check_choice, check_positive_int, lookup

Tensor = torch.Tensor


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def weight_fingerprint(model: nn.Module) -> str:
    """A short hash of all weights: equal fingerprints mean identical models.

    Show it once before a comparison to prove that the baseline and its distilled twin
    start from exactly the same weights.
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


class MLP(nn.Module):
    """Fully connected net: input -> hidden widths (ReLU) -> classes.

    ``bottleneck=k`` factors the first weight matrix as W = U V with a k-dimensional
    *linear* layer V in front (Ba & Caruana 2014, section 2.3): fewer parameters and
    faster training for a very wide first hidden layer, with no extra non-linearity.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 hidden: Sequence[int] = (100, 100), *, bottleneck: int | None = None):
        super().__init__()
        in_features = math.prod(input_shape)
        hidden = [check_positive_int("hidden width", h) for h in hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        if bottleneck is not None:
            check_positive_int("bottleneck", bottleneck)
            layers.append(nn.Linear(in_features, bottleneck, bias=False))  # V: linear, no ReLU
            in_features = bottleneck
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def shallow_mlp(input_shape: Sequence[int], num_classes: int, width: int = 512, *,
                bottleneck: int | None = None) -> MLP:
    """Ba & Caruana's shallow net: a single (wide) hidden layer, optional linear bottleneck."""
    return MLP(input_shape, num_classes, hidden=(width,), bottleneck=bottleneck)


def _as_channels_first(x: Tensor, dims: int) -> Tensor:
    """(B, L) -> (B, 1, L) for 1-D signals, (B, H, W) -> (B, 1, H, W) for images."""
    return x.unsqueeze(1) if x.dim() == dims + 1 else x


def _conv(dims: int):
    return {1: nn.Conv1d, 2: nn.Conv2d}[dims]


def _batch_norm(dims: int):
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]


class CNN(nn.Module):
    """Strided convolutions (ReLU) -> global average pool -> linear classifier.

    ``dims=1`` for signals (B, L) or (B, C, L); ``dims=2`` for images (B, C, H, W).
    Weight sharing across positions is what lets it handle MNIST-1D's shifted digits.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 channels: Sequence[int] = (32, 32, 32), *, kernel_size: int = 5, dims: int = 1):
        super().__init__()
        check_choice("dims", str(dims), ("1", "2"))
        self.dims = dims
        in_channels = input_shape[0] if len(input_shape) == dims + 1 else 1
        layers: list[nn.Module] = []
        for width in channels:
            check_positive_int("channels", width)
            layers += [_conv(dims)(in_channels, width, kernel_size, stride=2,
                                   padding=kernel_size // 2), nn.ReLU()]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(_as_channels_first(x, self.dims))  # (B, C, L') or (B, C, H', W')
        return self.classifier(h.flatten(2).mean(dim=2))


class BasicBlock(nn.Module):
    """Two 3-wide convolutions with batch norm and a shortcut (He et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dims: int):
        super().__init__()
        conv, bn = _conv(dims), _batch_norm(dims)
        self.body = nn.Sequential(
            conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            bn(out_channels), nn.ReLU(),
            conv(out_channels, out_channels, 3, padding=1, bias=False), bn(out_channels))
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv(in_channels, out_channels, 1, stride=stride, bias=False),
                                          bn(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """A small ResNet: stem -> stages (each halves the resolution) -> pool -> classifier.

    ``widths`` sets the channels per stage and ``blocks`` the number of residual blocks
    per stage. Two ResNets with the same widths but different depths have stage outputs of
    the same shape, which stagewise and feature distillation rely on.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 widths: Sequence[int] = (16, 32, 64), blocks: Sequence[int] = (1, 1, 1), *,
                 dims: int = 1):
        super().__init__()
        check_choice("dims", str(dims), ("1", "2"))
        if len(widths) != len(blocks):
            raise ValueError(f"widths and blocks need one entry per stage, got {len(widths)} "
                             f"widths and {len(blocks)} block counts")
        self.dims = dims
        in_channels = input_shape[0] if len(input_shape) == dims + 1 else 1
        conv, bn = _conv(dims), _batch_norm(dims)
        self.stem = nn.Sequential(conv(in_channels, widths[0], 3, padding=1, bias=False),
                                  bn(widths[0]), nn.ReLU())
        stages, channels = [], widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks)):
            check_positive_int("blocks per stage", count)
            stride = 1 if index == 0 else 2
            layers = [BasicBlock(channels, width, stride, dims)]
            layers += [BasicBlock(width, width, 1, dims) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)

    @property
    def stage_names(self) -> list[str]:
        """Module names of the stages, for :func:`capture_features`."""
        return [f"stages.{i}" for i in range(len(self.stages))]

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(_as_channels_first(x, self.dims))
        for stage in self.stages:
            h = stage(h)
        return self.classifier(h.flatten(2).mean(dim=2))


@contextlib.contextmanager
def capture_features(model: nn.Module, layer_names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Record the outputs of named sub-modules during forward passes, via forward hooks.

    >>> with capture_features(net, net.stage_names) as features:
    ...     logits = net(x)
    >>> features["stages.0"].shape

    The dict is refilled on every forward pass; the hooks are removed on exit. The
    recorded tensors keep their graph, so a feature loss can back-propagate through them.
    """
    modules = dict(model.named_modules())
    for name in layer_names:
        lookup("layer name", name, {n: None for n in modules if n})
    features: dict[str, Tensor] = {}

    def recorder(name):
        def hook(_module, _inputs, output):
            features[name] = output
        return hook

    handles = [modules[name].register_forward_hook(recorder(name)) for name in layer_names]
    try:
        yield features
    finally:
        for handle in handles:
            handle.remove()


MODELS = {"mlp": MLP, "shallow_mlp": shallow_mlp, "cnn": CNN, "resnet": ResNet}


def build_model(name: str, input_shape: Sequence[int], num_classes: int, *, seed: int | None = None,
                **options) -> nn.Module:
    """Build a model by name (``mlp``, ``shallow_mlp``, ``cnn``, ``resnet``).

    With ``seed``, the weights are drawn from a generator seeded with it, without touching
    the global random state: two models built with the same seed start identical.
    """
    factory = lookup("model", name, MODELS)
    if seed is None:
        return factory(input_shape, num_classes, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(input_shape, num_classes, **options)
