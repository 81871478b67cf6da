"""qcompile.train: quantizers, quantized layers, models, data, training methods and QONNX export.

Python API::

    from qcompile.train import TrainConfig, train
    result = train(TrainConfig(model="convnet", data="fashion-mnist", method="aqe",
                               wbits=1, abits=1, epochs=2, subset=10000, out="runs/aqe"))
    result.test_acc, result.onnx_path, result.report
"""

from __future__ import annotations

from .data import DatasetNotFoundError, load_dataset
from .export import export_onnx
from .layers import QuantAct, QuantConv2d, QuantLinear, QuantReport
from .models import build_model
from .quantize import quantize_model
from .quantizers import ActQuantizer, WeightQuantizer
from .registry import METHODS, REGISTRY, method_spec
from .trainer import TrainConfig, Trainer, TrainResult, train

__all__ = [
           "METHODS",
           "REGISTRY",
           "ActQuantizer",
           "DatasetNotFoundError",
           "QuantAct",
           "QuantConv2d",
           "QuantLinear",
           "QuantReport",
           "TrainConfig",
           "TrainResult",
           "Trainer",
           "WeightQuantizer",
           "build_model",
           "export_onnx",
           "load_dataset",
           "method_spec",
           "quantize_model",
           "train",
]
