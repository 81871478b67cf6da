"""CLI tests build their graphs with tests/graphs.py: put tests/ on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
