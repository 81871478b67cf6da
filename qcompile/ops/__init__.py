"""numpy reference semantics of every qcompile and QONNX op (the oracle for kernels and tests).

The schemas live in custom_ops/SPEC.md; each function here follows it line for line.
"""
