"""Every CUDA kernel compiles to PTX for sm_90 and fits its budgets (``ptxas -v``): no
spills, static shared memory within 48 KiB, registers for the largest block ablate launches.
Needs NVVM and ptxas (the test extras bring both), no GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba.cuda")

from ablate import cells  # noqa: E402
from ablate.cuda.device import ROWS_PER_THREAD  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


RESIDENT_ROWS = (1, 8)  # CI's share of the resident kernels: the committed report has all
SPREAD_ROWS = (1,)  # and of the kernels for a tile spread over blocks (ablate.cuda.tiles)


def resident_kernels(text: str) -> set[tuple[str, str, str]]:
    """(cell, role, "rows<n>") of a report's resident-weights lines."""
    return {(line.split()[0], line.split()[1],
             next((w for w in line.split() if w.startswith("rows")), "rows1"))
            for line in text.splitlines() if " resident " in line}


def spread_kernels(text: str, resident: bool = False) -> set[tuple[str, str, str]]:
    """(cell, role, "rows<n>") of a report's spread-tile lines (with R resident, those)."""
    marker = " resident spread " if resident else " spread "
    return {(line.split()[0], line.split()[1],
             next((w for w in line.split() if w.startswith("rows")), "rows1"))
            for line in text.splitlines() if marker in line}


def expected_spread(rows_checked) -> set[tuple[str, str, str]]:
    """Every cell, both roles, at each of rows_checked."""
    return {(cell, role, f"rows{rows}") for cell in cells.names()
            for role in ("forward", "backward") for rows in rows_checked}


def expected_resident(rows_checked) -> set[tuple[str, str, str]]:
    """Every cell with R at each of rows_checked, but those whose second recurrent matrix
    spills beside R at more than one row a thread (ablate.cuda.device.resident_layout)."""
    spilling = ("fgr", "net_readout", "use_gate")
    with_r = [cell for cell in cells.names() if cells.get(cell).recurrent]
    return {(cell, role, f"rows{rows}") for cell in with_r for role in ("forward", "backward")
            for rows in rows_checked if rows == 1 or cell not in spilling}


def test_every_kernel_compiles_for_sm90_within_budget(tmp_path):
    out = tmp_path / "cuda_resources.txt"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}  # the simulator compiles no PTX
    resident_rows = ",".join(map(str, RESIDENT_ROWS))
    result = subprocess.run([sys.executable, "-m", "ablate.cuda.resources", "--out", str(out),
                             "--resident-rows", resident_rows,
                             "--spread-rows", ",".join(map(str, SPREAD_ROWS))],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    text = out.read_text()
    kernels = [line.split()[:3] for line in text.splitlines() if not line.startswith("#")][1:]
    names = {(name, role) for name, role, _ in kernels if name != "adam"}
    assert names == {(cell, role) for cell in cells.names() for role in ("forward", "backward")}
    blocked = {tuple(line.split()[:2] + line.split()[3:4]) for line in text.splitlines()
               if " rows" in line and " spread " not in line}
    assert blocked == {(cell, role, f"rows{rows}") for cell in cells.names()
                       for role in ("forward", "backward") for rows in ROWS_PER_THREAD[1:]}
    # R resident in registers (H 64, 256 threads, 32 rows a tile: the largest share of R a
    # thread holds), at the rows_per_thread CI checks
    assert resident_kernels(text) == expected_resident(RESIDENT_ROWS)
    assert spread_kernels(text) == expected_spread(SPREAD_ROWS)
    # and with R resident in the spread blocks (H 128 over 8), where both check the rows
    both = tuple(set(RESIDENT_ROWS) & set(SPREAD_ROWS))
    assert both and spread_kernels(text, resident=True) == expected_resident(both)
    assert any(name == "adam" for name, *_ in kernels)
    for line in text.splitlines()[4:-1]:
        registers = int(line.split()[-5])  # then smem, spill stores, spill loads, stack
        assert 0 < registers <= 255, line
    assert text.rstrip().endswith("# over budget: none"), text.splitlines()[-1]
    assert result.returncode == 0


def test_the_committed_report_has_every_resident_kernel_within_budget():
    """bench/cuda_resources.txt, written by ``python -m ablate.cuda.resources``, lists the
    resident and spread-tile kernels at every rows_per_thread (CI compiles those at
    RESIDENT_ROWS and SPREAD_ROWS only, to stay within its time) and none over budget."""
    text = (ROOT / "bench" / "cuda_resources.txt").read_text()
    assert resident_kernels(text) == expected_resident(ROWS_PER_THREAD)
    assert spread_kernels(text) == expected_spread(ROWS_PER_THREAD)
    assert text.rstrip().endswith("# over budget: none")


def test_budget_rules_catch_spills_shared_memory_and_registers():
    from ablate.cuda.resources import Usage, problems

    fine = Usage("a forward float32", 128, 0, 0, 0, 0)
    assert problems([fine], 256) == []
    spill = fine._replace(kernel="b", spill_stores=8, spill_loads=8)
    shared = fine._replace(kernel="c", shared=64 * 1024)
    registers = fine._replace(kernel="d", registers=255)
    found = problems([spill, shared, registers], 512)
    assert [line.split(":")[0] for line in found] == ["b", "c", "d"]
