"""What machine a benchmark ran on, for the JSON it writes."""

from qcompile.bench import cpu_model

__all__ = ["cpu_model"]
