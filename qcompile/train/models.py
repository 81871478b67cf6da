"""Model families: the AQE paper's ConvNet, VGG-small, CIFAR-style ResNet-20/18.

Every model is built from plain ``nn.Conv2d``/``nn.Linear``/``nn.Hardtanh`` in forward order and
then passed through :func:`quantize_model`: each HardTanh is a quantization point, so a block
reads QuantConv → (pool) → BN → HardTanh → quantize (the AQE block). Inputs of any channel count
and size (1×28×28 Fashion-MNIST, 3×32×32, 1×8×8 digits) work: the classifier's input size is
found with a dry run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .layers import QuantReport
from .quantize import quantize_model

MODELS = ("convnet", "vgg_small", "resnet20", "resnet18")

#: ConvNet width multipliers for the AQE paper's Models A–D. The paper gives only Model A's
#: parameter count (≈1.23M on CIFAR-10, which the base widths below reproduce: 1.225M); the
#: multipliers of B–D are an assumption.
CONVNET_MODEL_WIDTH = {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0}


def _c(ch: int, width: float) -> int:
    return max(1, round(ch * width))


def _block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(cout), nn.Hardtanh()]
    return layers


class ConvNet(nn.Module):
    """6 conv + 3 FC (AQE "Model A" at width 1): conv widths 32,32,64,64,128,128 (pool after
    the 2nd, 4th and 6th conv), FC 384 → 384 → classes."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: float = 1.0,
                 fc_hidden: int = 384) -> None:
        super().__init__()
        chans = [_c(c, width) for c in (32, 32, 64, 64, 128, 128)]
        feats: list[nn.Module] = []
        cin = in_shape[0]
        for i, c in enumerate(chans):
            feats += _block(cin, c, pool=i % 2 == 1)
            cin = c
        self.features = nn.Sequential(*feats)
        flat = _flat_size(self.features, in_shape)
        h = _c(fc_hidden, width)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, h, bias=False), nn.BatchNorm1d(h), nn.Hardtanh(),
            nn.Linear(h, h, bias=False), nn.BatchNorm1d(h), nn.Hardtanh(),
            nn.Linear(h, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class VGGSmall(nn.Module):
    """VGG-small: 128,128,M,256,256,M,512,512,M (× width) then one FC."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int,
                 width: float = 1.0) -> None:
        super().__init__()
        chans = [_c(c, width) for c in (128, 128, 256, 256, 512, 512)]
        feats: list[nn.Module] = []
        cin = in_shape[0]
        for i, c in enumerate(chans):
            feats += _block(cin, c, pool=i % 2 == 1)
            cin = c
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Flatten(),
                                        nn.Linear(_flat_size(self.features, in_shape),
                                                  num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Residual block for low-bit nets (Bi-Real style: the shortcut carries real values).

    x → HardTanh/quantize → conv → BN → HardTanh/quantize → conv → BN → (+ shortcut(x)).
    A downsampling shortcut is a 1×1 conv (stride 2) + BN on the quantized input, so every conv
    in the block reads quantized activations.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.act1 = nn.Hardtanh()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act2 = nn.Hardtanh()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        xq = self.act1(x)
        h = self.bn1(self.conv1(xq))
        h = self.bn2(self.conv2(self.act2(h)))
        return h + (self.down(xq) if self.down is not None else x)


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem, stages of BasicBlocks, global average pool, FC."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int,
                 stage_widths: tuple[int, ...], blocks: tuple[int, ...],
                 width: float = 1.0) -> None:
        super().__init__()
        ws = [_c(c, width) for c in stage_widths]
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], ws[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(ws[0]))
        layers: list[nn.Module] = []
        cin = ws[0]
        for i, (w, n) in enumerate(zip(ws, blocks, strict=False)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


def _flat_size(features: nn.Module, in_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        was = features.training
        features.eval()
        n = features(torch.zeros(1, *in_shape)).numel()
        features.train(was)
    return n


def build_fp_model(name: str, in_shape: tuple[int, int, int], num_classes: int,
                   width: float = 1.0) -> nn.Module:
    """The full-precision model ``name`` (quantization points are HardTanh modules)."""
    if name == "convnet":
        return ConvNet(in_shape, num_classes, width)
    if name.startswith("convnet_") and name[8:].upper() in CONVNET_MODEL_WIDTH:
        return ConvNet(in_shape, num_classes, width * CONVNET_MODEL_WIDTH[name[8:].upper()])
    if name == "vgg_small":
        return VGGSmall(in_shape, num_classes, width)
    if name == "resnet20":
        return ResNet(in_shape, num_classes, (16, 32, 64), (3, 3, 3), width)
    if name == "resnet18":
        return ResNet(in_shape, num_classes, (64, 128, 256, 512), (2, 2, 2, 2), width)
    raise ValueError(f"expected model in {MODELS} (or convnet_a..convnet_d), got {name!r}")


def build_model(name: str, in_shape: tuple[int, int, int], num_classes: int, *,
                width: float = 1.0, wbits: int = 1, abits: int = 1, method: str = "ste",
                keep_first_last_fp: bool = True, **spec_options: Any
                ) -> tuple[nn.Module, QuantReport]:
    """Build ``name`` and quantize it for ``method`` at ``wbits``/``abits``."""
    model = build_fp_model(name, in_shape, num_classes, width)
    report = quantize_model(model, wbits, abits, method, keep_first_last_fp, **spec_options)
    return model, report
