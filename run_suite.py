#!/usr/bin/env python
"""Run a suite, resume it, report it: ``python run_suite.py suites/smoke.toml``.

See ``python run_suite.py --help`` and suites/README.md; the same command is installed
as ``ablate``.
"""

import sys

from ablate.cli import main

if __name__ == "__main__":
    sys.exit(main())
