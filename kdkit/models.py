"""Small models that train in seconds on a laptop CPU.

* :class:`MLP` - fully connected; with one wide hidden layer and an optional linear
  bottleneck it is Ba & Caruana's (2014) shallow mimic net.
* :class:`CNN` - a few strided convolutions, 1-D (MNIST-1D) or 2-D (images).
* :class:`ResNet` - a small residual net of stages; two ResNets of the same widths and
  different depths have stage outputs of the same shape.
* :class:`Cohort` - several peers trained together (Deep Mutual Learning).
* :class:`MultiExit` - a network with a light classifier after each stage (Be Your Own Teacher).
* :class:`Adaptor` - a small regressor that maps one feature shape onto another (FitNets).

All models take a batch of inputs shaped like a :class:`kdkit.data.Split`'s ``x`` and
return logits (B, K); a cohort and a multi-exit network return a dict of them, one per
peer or exit, and name their ``main_output`` (None for a cohort: its peers are equals).

**Features.** MLP, CNN and ResNet have ``forward_with_features(x, pre_activation=False)``,
which returns the logits *and* a dict of named intermediate features, in order (e.g.
``stem, stage1, stage2, stage3, embedding`` for a ResNet; ``embedding`` is always the
vector the classifier reads), and ``stage_modules()``, the sub-modules that compute them
(what a stagewise method freezes or trains). The features are returned explicitly rather
than read through forward hooks because a method needs them in the same pass as the
logits, with their graph, and sometimes *before* the ReLU (``pre_activation=True``),
which no module outputs. :func:`capture_features` still reads any named sub-module's
output through hooks, for layers a model does not expose.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdkit.validation import check_choice, check_positive_int, check_seed, check_shape, lookup

Tensor = torch.Tensor


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_multiply_adds(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward pass for one example, counted in its linear and
    convolution layers (what dominates the cost; activations and pooling are left out).

    The honest measure of what a small student saves at inference: the workbook's MLP
    student has *more* parameters than the CNN teacher but needs ~5x fewer multiply-adds,
    because a convolution reuses each weight at every position.
    """
    return sum(multiply_adds_by_layer(model, input_shape).values())


def multiply_adds_by_layer(model: nn.Module, input_shape: Sequence[int]) -> dict[nn.Module, int]:
    """Multiply-adds per example of each linear and convolution layer that one forward pass
    of ``model`` runs (see :func:`count_multiply_adds`), keyed by the layer."""
    counts: dict[nn.Module, int] = {}

    def count(module, _inputs, output):
        positions = output[0].numel() // output.shape[1]              # per example
        if isinstance(module, nn.Linear):
            macs = module.in_features * module.out_features * positions
        else:                                                          # Conv1d / Conv2d
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            macs = per_output * module.out_channels * positions
        counts[module] = counts.get(module, 0) + macs

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    handles = [m.register_forward_hook(count) for m in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return counts


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
        in_features = math.prod(_check_model_shapes(input_shape, num_classes))
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
        self._first_hidden = 2 if bottleneck is not None else 1  # index in net of hidden1's Linear
        self.depth = len(hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def forward_with_features(self, x: Tensor, *, pre_activation: bool = False
                              ) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and ``{"hidden1": ..., "hiddenN": ..., "embedding": ...}``, each (B, width)."""
        h = self.net[:self._first_hidden](x)                          # (B, D) or (B, bottleneck)
        features = {}
        for index in range(self.depth):
            linear = self.net[self._first_hidden + 2 * index]
            pre = linear(h)                                            # (B, width)
            h = torch.relu(pre)
            features[f"hidden{index + 1}"] = pre if pre_activation else h
        features["embedding"] = h
        return self.net[-1](h), features

    def stage_modules(self) -> dict[str, nn.Module]:
        """``hidden1`` (with the bottleneck, if any) ... ``hiddenN``, ``classifier``."""
        stages = {}
        for index in range(self.depth):
            first = self._first_hidden + 2 * index
            start = 1 if index == 0 else first                        # hidden1 owns the bottleneck
            stages[f"hidden{index + 1}"] = nn.Sequential(*self.net[start:first + 2])
        stages["classifier"] = self.net[-1]
        return stages


def shallow_mlp(input_shape: Sequence[int], num_classes: int, width: int = 512, *,
                bottleneck: int | None = None) -> MLP:
    """Ba & Caruana's shallow net: a single (wide) hidden layer, optional linear bottleneck."""
    return MLP(input_shape, num_classes, hidden=(width,), bottleneck=bottleneck)


def _check_model_shapes(input_shape, num_classes: int) -> tuple[int, ...]:
    """The checks every model shares: a per-example input shape and at least 2 classes."""
    check_positive_int("num_classes", num_classes, minimum=2)
    return check_shape("input_shape", input_shape)


def _conv_in_channels(input_shape: tuple[int, ...], dims: int) -> int:
    """Input channels of a ``dims``-D convolutional net, from the per-example input shape:
    (L,) or (C, L) for signals, (H, W) or (C, H, W) for images."""
    if len(input_shape) not in (dims, dims + 1):
        kind = "(L,) or (C, L) for signals" if dims == 1 else "(H, W) or (C, H, W) for images"
        raise ValueError(f"a {dims}-D convolutional net takes inputs of shape {kind}, got input_shape "
                         f"{input_shape}" + ("; for images use dims=2" if dims == 1 else ""))
    return input_shape[0] if len(input_shape) == dims + 1 else 1


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
        check_positive_int("kernel_size", kernel_size)
        if len(channels) == 0:
            raise ValueError("channels must name at least one convolution's width")
        self.dims = dims
        in_channels = _conv_in_channels(_check_model_shapes(input_shape, num_classes), dims)
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

    def forward_with_features(self, x: Tensor, *, pre_activation: bool = False
                              ) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and ``{"conv1": ..., "convN": (B, C, L'), "embedding": (B, C)}``."""
        h = _as_channels_first(x, self.dims)
        features = {}
        for index in range(0, len(self.features), 2):
            pre = self.features[index](h)                          # (B, C, L') or (B, C, H', W')
            h = torch.relu(pre)
            features[f"conv{index // 2 + 1}"] = pre if pre_activation else h
        features["embedding"] = h.flatten(2).mean(dim=2)           # (B, C)
        return self.classifier(features["embedding"]), features

    def stage_modules(self) -> dict[str, nn.Module]:
        """``conv1`` ... ``convN`` (each a convolution and its ReLU), ``classifier``."""
        stages = {f"conv{i // 2 + 1}": self.features[i:i + 2] for i in range(0, len(self.features), 2)}
        stages["classifier"] = self.classifier
        return stages


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
        return torch.relu(self.pre_activation(x))

    def pre_activation(self, x: Tensor) -> Tensor:
        """The block's output before its final ReLU: body + shortcut."""
        return self.body(x) + self.shortcut(x)


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
        if len(widths) == 0:
            raise ValueError("widths must name at least one stage")
        for width in widths:
            check_positive_int("widths", width)
        self.dims = dims
        in_channels = _conv_in_channels(_check_model_shapes(input_shape, num_classes), dims)
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

    def forward_with_features(self, x: Tensor, *, pre_activation: bool = False
                              ) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and ``{"stem", "stage1", ..., "stageN": (B, C, L'), "embedding": (B, C)}``.

        With ``pre_activation`` a feature is taken before its last ReLU (the stem's batch
        norm output, a stage's last residual sum), where a negative value still carries
        information that the ReLU would clip to 0.
        """
        pre = self.stem[:-1](_as_channels_first(x, self.dims))     # conv, bn: (B, C, L)
        h = torch.relu(pre)
        features = {"stem": pre if pre_activation else h}
        for index, stage in enumerate(self.stages, start=1):
            h = stage[:-1](h)
            pre = stage[-1].pre_activation(h)                       # (B, C_i, L_i)
            h = torch.relu(pre)
            features[f"stage{index}"] = pre if pre_activation else h
        features["embedding"] = h.flatten(2).mean(dim=2)            # (B, C)
        return self.classifier(features["embedding"]), features

    def stage_modules(self) -> dict[str, nn.Module]:
        """``stem``, ``stage1`` ... ``stageN``, ``classifier``."""
        stages = {"stem": self.stem}
        stages.update({f"stage{i}": stage for i, stage in enumerate(self.stages, start=1)})
        stages["classifier"] = self.classifier
        return stages


def feature_shapes(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """The shape (without the batch) of each of ``model``'s named features, e.g. for adaptors."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _logits, features = model.forward_with_features(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    return {name: tuple(f.shape[1:]) for name, f in features.items()}


class Cohort(nn.Module):
    """Peers trained together, each a whole network (Deep Mutual Learning).

    ``forward`` returns ``{"peer1": logits, "peer2": logits, ...}``. The peers share no
    weights and may differ in architecture; :func:`kdkit.train.evaluate` measures each.
    """
    main_output = None  # the peers are equals: the headline is their mean

    def __init__(self, peers: Sequence[nn.Module]):
        super().__init__()
        if len(peers) < 1 or not all(isinstance(p, nn.Module) for p in peers):
            raise ValueError("a cohort needs a list of at least one peer network")
        self.peers = nn.ModuleDict({f"peer{i}": peer for i, peer in enumerate(peers, start=1)})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {name: peer(x) for name, peer in self.peers.items()}


class MultiExit(nn.Module):
    """A backbone with a light classifier ("exit") after some of its stages.

    Each exit is global average pooling and one linear layer: it adds ``C * K + K``
    parameters and ``C * K`` multiply-adds per example, so a shallow exit really is cheaper
    than the full network (heavy exit branches would make every exit as deep as the main
    path). ``forward`` returns ``{"stage1": logits, ..., "final": logits}``, shallowest
    first; ``final`` is the backbone's own classifier and the main output.
    """
    main_output = "final"

    def __init__(self, backbone: nn.Module, input_shape: Sequence[int], num_classes: int,
                 exits: Sequence[str] | None = None):
        super().__init__()
        shapes = feature_shapes(backbone, input_shape)
        maps = [name for name, shape in shapes.items() if name != "embedding"]
        # By default, one exit after every stage but the last, which the final classifier reads.
        exits = list([m for m in maps[:-1] if m != "stem"] if exits is None else exits)
        for name in exits:
            lookup("exit feature", name, {m: None for m in maps})
        self.backbone = backbone
        self.exits = nn.ModuleDict({name: nn.Linear(shapes[name][0], num_classes) for name in exits})

    def forward_with_features(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The exits' logits and the backbone's features (for a feature hint between exits)."""
        logits, features = self.backbone.forward_with_features(x)
        outputs = {name: head(pool_to_vector(features[name])) for name, head in self.exits.items()}
        outputs["final"] = logits
        return outputs, features

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.forward_with_features(x)[0]

    def exit_costs(self) -> dict[str, int]:
        """Parameters each exit adds to the backbone (``final`` adds none)."""
        costs = {name: sum(p.numel() for p in head.parameters()) for name, head in self.exits.items()}
        return {**costs, "final": 0}

    def exit_multiply_adds(self, input_shape: Sequence[int]) -> dict[str, int]:
        """Multiply-adds per example to reach each exit's answer, shallowest first: the
        backbone's stages up to the exit's feature *and* the exit itself (what an early exit
        really costs); ``final`` is the whole backbone."""
        by_layer = multiply_adds_by_layer(self, input_shape)

        def cost(module: nn.Module) -> int:
            return sum(by_layer.get(layer, 0) for layer in module.modules())

        up_to, running = {}, 0
        for name, stage in self.backbone.stage_modules().items():     # in forward order
            running += cost(stage)
            up_to[name] = running
        costs = {name: up_to[name] + cost(head) for name, head in self.exits.items()}
        return {**costs, "final": running}


def pool_to_vector(feature: Tensor) -> Tensor:
    """A feature as one vector per example: maps are averaged over positions (B, C), vectors kept."""
    return feature.flatten(2).mean(dim=2) if feature.dim() > 2 else feature


class Adaptor(nn.Module):
    """A small trainable regressor from a student feature shape to a teacher's (FitNets).

    Shapes are per example, without the batch: ``(C,)`` for a vector, ``(C, L)`` or
    ``(C, H, W)`` for a map. Vector -> vector: a linear layer. Map -> map: a 1x1
    convolution for the channels, then adaptive average pooling if the sizes differ.
    Map -> vector: global average pooling, then a linear layer. Everything is linear, so
    the adaptor cannot do the student's work for it (a deep regressor could).
    """

    def __init__(self, student_shape: Sequence[int], teacher_shape: Sequence[int]):
        super().__init__()
        student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
        for name, shape in (("student_shape", student_shape), ("teacher_shape", teacher_shape)):
            if not 1 <= len(shape) <= 3 or not all(isinstance(d, int) and d > 0 for d in shape):
                raise ValueError(f"{name} must be (C,), (C, L) or (C, H, W) with positive sizes, got {shape}")
        if len(student_shape) == 1 and len(teacher_shape) > 1:
            raise ValueError(f"cannot map a vector {student_shape} onto a feature map {teacher_shape}")
        self.teacher_shape = teacher_shape
        if len(teacher_shape) == 1:
            self.pool_to_vector = len(student_shape) > 1
            self.map = nn.Linear(student_shape[0], teacher_shape[0])
        else:
            if len(student_shape) != len(teacher_shape):
                raise ValueError(f"feature maps of different dimensions: {student_shape} vs {teacher_shape}")
            self.pool_to_vector = False
            self.map = _conv(len(teacher_shape) - 1)(student_shape[0], teacher_shape[0], 1)

    def forward(self, h: Tensor) -> Tensor:
        if self.pool_to_vector:
            h = h.flatten(2).mean(dim=2)                                # (B, C)
        h = self.map(h)
        if h.dim() > 2 and tuple(h.shape[2:]) != self.teacher_shape[1:]:
            pool = F.adaptive_avg_pool1d if h.dim() == 3 else F.adaptive_avg_pool2d
            h = pool(h, self.teacher_shape[1:])
        return h


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


def multi_exit(input_shape: Sequence[int], num_classes: int, *, backbone: str = "resnet",
               exits: Sequence[str] | None = None, **options) -> MultiExit:
    """A :class:`MultiExit` network around a backbone built by name (``build_model``'s names)."""
    net = lookup("backbone", backbone, _BACKBONES)(input_shape, num_classes, **options)
    return MultiExit(net, input_shape, num_classes, exits)


_BACKBONES = {"mlp": MLP, "cnn": CNN, "resnet": ResNet}
MODELS = {"mlp": MLP, "shallow_mlp": shallow_mlp, "cnn": CNN, "resnet": ResNet, "multi_exit": multi_exit}


def build_model(name: str, input_shape: Sequence[int], num_classes: int, *, seed: int | None = None,
                **options) -> nn.Module:
    """Build a model by name (``mlp``, ``shallow_mlp``, ``cnn``, ``resnet``, ``multi_exit``).

    With ``seed``, the weights are drawn from a generator seeded with it, without touching
    the global random state: two models built with the same seed start identical.
    """
    factory = lookup("model", name, MODELS)
    _check_model_shapes(input_shape, num_classes)
    if seed is not None:
        check_seed(seed)
    if seed is None:
        return factory(input_shape, num_classes, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(input_shape, num_classes, **options)
