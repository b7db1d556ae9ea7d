"""Make the job functions of ``sweep_test_jobs`` importable in worker processes (spawn copies
``sys.path``; a local Ray instance gets it as PYTHONPATH)."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
