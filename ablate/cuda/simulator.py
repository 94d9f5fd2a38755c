"""What the CUDA kernels need when they run under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``: the tests on a machine without a GPU); nothing on a GPU.

Two things, both process-wide:

- **Launches take turns.** Under the simulator ``kernel[grid, block]`` stores the grid on
  the shared kernel object and a launch rebinds ``cuda`` in the modules of the kernel and
  its device functions, so two launches at once from two threads would run with each
  other's grid, and a kernel built meanwhile would call the launch's stand-in for
  ``cuda.jit``: launches and builds hold ``turn()``.
- **The GIL changes hands sooner.** The simulator runs every CUDA thread of a block as a
  Python thread while the launching thread polls them in a loop that never waits; by
  default a thread keeps the GIL for Python's 5 ms switch interval before a waiting one
  may take it, so a block's threads each reaching a barrier spend most of their time
  waiting behind the poller. With 0.1 ms, one simulated lstm training check
  (tests/test_cuda.py, lstm-tv-None-2-1) took 14.4 s instead of 30.3 s here (1e-5 s: 15.3 s,
  1 ms: 19.0 s).
"""

from __future__ import annotations

import sys
import threading
from contextlib import nullcontext

SWITCH_INTERVAL_S = 1e-4

_LAUNCH = threading.Lock()


def active() -> bool:
    """Whether numba-cuda runs kernels under its simulator."""
    try:
        from numba.cuda.core import config  # numba-cuda's own config, where it has one
    except ImportError:  # an older numba-cuda reads Numba's
        from numba import config
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def turn():
    """The simulator's one-at-a-time lock for launches and kernel builds; nothing on a GPU."""
    return _LAUNCH if active() else nullcontext()


def hand_over_sooner() -> None:
    """Under the simulator, shorten Python's switch interval to SWITCH_INTERVAL_S (module
    doc); on a GPU leave it alone."""
    if active() and sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
