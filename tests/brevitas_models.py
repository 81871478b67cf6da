"""A binary VGG-style CNN built with Brevitas and exported to QONNX (the format users bring)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn


def binary_vgg(seed: int = 0) -> nn.Module:
    """float first conv, BN, max-pool, binary convs with padding, float classifier."""
    import brevitas.nn as qnn
    from brevitas.core.scaling import ScalingImplType
    from brevitas.core.stats import StatsOp
    from brevitas.quant.binary import (
        SignedBinaryActPerTensorConst,
        SignedBinaryWeightPerTensorConst,
    )

    class BinaryWeightPerChannel(SignedBinaryWeightPerTensorConst):
        # XNOR-Net scaling: alpha_c = mean |W_c| per output channel
        scaling_impl_type = ScalingImplType.STATS
        scaling_stats_op = StatsOp.AVE
        scaling_per_output_channel = True

    def binary_block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
        layers: list[nn.Module] = [
            qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=False),
            qnn.QuantConv2d(cin, cout, 3, padding=1, bias=False, weight_quant=BinaryWeightPerChannel),
            nn.BatchNorm2d(cout),
        ]
        if pool:
            layers.append(nn.MaxPool2d(2))
        return layers

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.MaxPool2d(2),
        *binary_block(64, 64, pool=False),
        *binary_block(64, 128, pool=True),
        *binary_block(128, 128, pool=True),
        nn.Flatten(),
        nn.Linear(128 * 3 * 3, 10),
    )
    # Non-trivial BatchNorm statistics, as after training.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(-1.5, 1.5)  # some negative gammas: sign-flipped channels
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def export_binary_vgg(path: Path, seed: int = 0) -> Path:
    from brevitas.export import export_qonnx

    model = binary_vgg(seed)
    with torch.no_grad():
        export_qonnx(model, torch.randn(1, 1, 28, 28), export_path=str(path))
    return path


def multibit_cnn(wbits: int, abits: int, seed: int = 0) -> nn.Module:
    """float first conv, then QuantReLU(abits) -> QuantConv2d(wbits, per-channel scale) -> BN blocks,
    a max-pool, and a float classifier; `wbits == 1` uses binary weights (BCGD-style W1/A4)."""
    import brevitas.nn as qnn
    from brevitas.quant import Int8WeightPerChannelFloat

    torch.manual_seed(seed)

    def block(cin: int, cout: int) -> list[nn.Module]:
        if wbits == 1:
            from brevitas.core.scaling import ScalingImplType
            from brevitas.core.stats import StatsOp
            from brevitas.quant.binary import SignedBinaryWeightPerTensorConst

            class BinaryPerChannel(SignedBinaryWeightPerTensorConst):
                scaling_impl_type = ScalingImplType.STATS
                scaling_stats_op = StatsOp.AVE
                scaling_per_output_channel = True

            conv = qnn.QuantConv2d(cin, cout, 3, padding=1, bias=False, weight_quant=BinaryPerChannel)
        else:
            conv = qnn.QuantConv2d(cin, cout, 3, padding=1, bias=False, weight_quant=Int8WeightPerChannelFloat,
                                   weight_bit_width=wbits)
        return [qnn.QuantReLU(bit_width=abits, return_quant_tensor=False), conv, nn.BatchNorm2d(cout)]

    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32),
        *block(32, 64), nn.MaxPool2d(2),
        *block(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
    )
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.5)
    model.eval()
    with torch.no_grad():  # let the activation quantizers' scales see data once
        model(torch.randn(4, 1, 28, 28))
    return model


def export_multibit_cnn(path: Path, wbits: int, abits: int, seed: int = 0) -> Path:
    from brevitas.export import export_qonnx

    model = multibit_cnn(wbits, abits, seed)
    with torch.no_grad():
        export_qonnx(model, torch.randn(1, 1, 28, 28), export_path=str(path))
    return path


def export_multibit_cnn_qcdq(path: Path, wbits: int, abits: int, seed: int = 0) -> Path:
    """The same model exported as QCDQ (QuantizeLinear -> Clip -> DequantizeLinear)."""
    from brevitas.export import export_onnx_qcdq

    model = multibit_cnn(wbits, abits, seed)
    with torch.no_grad():
        export_onnx_qcdq(model, torch.randn(1, 1, 28, 28), export_path=str(path))
    return path


def export_bnn_pynq(path: Path, cfg: str) -> Path:
    """A Brevitas BNN-PYNQ example (cnv_2w2a, tfc_2w2a, ...), random weights, exported to QONNX with
    batch 1 (CIFAR 3x32x32 for cnv, 1x28x28 for the fc models)."""
    import brevitas_examples.bnn_pynq.models as bnn
    from brevitas.export import export_qonnx

    torch.manual_seed(0)
    shape = (1, 1, 28, 28) if "fc" in cfg else (1, 3, 32, 32)
    with torch.no_grad():
        export_qonnx(getattr(bnn, cfg)(pretrained=False).eval(), torch.randn(*shape), export_path=str(path),
                     dynamo=False)
    return path
