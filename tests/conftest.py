"""Test configuration: the tests directory is importable (toy_ops, kernel_reference)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
