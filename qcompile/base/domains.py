"""Operator domains and opset versions: the one place they are spelled."""

QONNX_DOMAIN = "qonnx.custom_op.general"
QCOMPILE_DOMAIN = "qcompile"
QONNX_OPSET = 1
QCOMPILE_OPSET = 1
QONNX_QUANT_OPS = ("Quant", "IntQuant")
