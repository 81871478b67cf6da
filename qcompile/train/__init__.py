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
from .layers import QuantAct, QuantConv2d, QuantLinear, QuantReport, method_spec, quantize_model
from .models import build_model
from .quantizers import ActQuantizer, WeightQuantizer
from .trainer import TrainConfig, Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train", "export_onnx", "quantize_model",
           "method_spec", "QuantConv2d", "QuantLinear", "QuantAct", "QuantReport",
           "WeightQuantizer", "ActQuantizer", "build_model", "load_dataset",
           "DatasetNotFoundError"]
