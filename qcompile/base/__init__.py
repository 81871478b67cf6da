"""The leaf layer: ONNX/onnx-ir helpers every other qcompile layer may import; it imports no qcompile module."""
