"""Test setup shared by the test files: import this checkout's ``ablate``, installed or not;
run the CUDA kernels under Numba's CUDA simulator unless ABLATE_TEST_GPU=1 (a GPU machine)."""

import os
import sys
from pathlib import Path

# Read when numba.cuda is first imported, so before any test imports it. Subprocesses the
# tests start inherit it (they run CPU suites, where it changes nothing).
if os.environ.get("ABLATE_TEST_GPU") != "1":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
