"""Every CUDA kernel compiles to PTX for sm_90 and fits its budgets (``ptxas -v``): no
spills, static shared memory within 48 KiB, registers for the largest block ablate launches.
Needs NVVM and ptxas (the test extras bring both), no GPU.

bench/cuda_resources.txt has every kernel (859) and names the hash of the code they compile
from: it must be of the code as it is. CI compiles every cell and, of each design, the
kernels nearest their budgets itself (105 of them; 82 took about 100 s on 2 cores, all 573
took 630 s before the cluster kernels came), and
finds the report's figures where its toolchain is the report's."""

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


REPORT = ROOT / "bench" / "cuda_resources.txt"
REGENERATE = "NUMBA_ENABLE_CUDASIM=0 python -m ablate.cuda.resources --out bench/cuda_resources.txt"


def figures(text: str) -> dict[str, tuple[int, ...]]:
    """kernel name -> (registers, shared B, spill stores, spill loads, stack B) of a report."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("#") or line.startswith("kernel "):
            continue
        words = line.split()
        rows[" ".join(words[:-5])] = tuple(int(v) for v in words[-5:])
    return rows


def design(name: str) -> str:
    """What follows the dtype in a kernel's name ("rows8 resident spread"; "" at one row a
    thread with R in memory, one block a tile, and for Adam)."""
    words = name.split()
    return " ".join(words[3:]) if words[0] != "adam" else ""


def kernels_of_kind(names, kind: str) -> set[tuple[str, str, str]]:
    """(cell, role, "rows<n>") of the kernels of one ``kind``: "resident" (R in registers,
    one block a tile), "spread" (R in memory), "resident spread", or either spread kind
    over a thread-block cluster ("cluster", "resident cluster")."""
    found = set()
    for name in names:
        words = name.split()
        if " ".join(w for w in words if w in ("resident", "spread", "cluster")) == kind:
            rows = next((w for w in words if w.startswith("rows")), "rows1")
            found.add((words[0], words[1], rows))
    return found


def expected_spread() -> set[tuple[str, str, str]]:
    """Every cell, both roles, at every rows_per_thread."""
    return {(cell, role, f"rows{rows}") for cell in cells.names()
            for role in ("forward", "backward") for rows in ROWS_PER_THREAD}


def expected_resident() -> set[tuple[str, str, str]]:
    """Every cell with R at every rows_per_thread, but those whose second recurrent matrix
    spills beside R at more than one row a thread (ablate.cuda.device.resident_layout)."""
    spilling = ("fgr", "net_readout", "use_gate")
    with_r = [cell for cell in cells.names() if cells.get(cell).recurrent]
    return {(cell, role, f"rows{rows}") for cell in with_r for role in ("forward", "backward")
            for rows in ROWS_PER_THREAD if rows == 1 or cell not in spilling}


def within_budget(text: str) -> None:
    for name, (registers, *_) in figures(text).items():
        assert 0 < registers <= 255, name
    assert text.rstrip().endswith("# over budget: none"), text.splitlines()[-1]


def test_the_committed_report_has_every_kernel_of_these_sources_within_budget():
    """bench/cuda_resources.txt lists every kernel (each cell's forward and backward at every
    rows_per_thread, with R resident, over spread blocks, both, each spread kind also over a
    thread-block cluster, and Adam), compiled from
    the code as it is now (its source hash), none over budget. Any change to the code the
    kernels compile from fails here until the report is written again."""
    from ablate.cuda.resources import EVERY, report_sources, source_version

    text = REPORT.read_text()
    assert report_sources(text) == source_version(), (
        f"bench/cuda_resources.txt is of other sources ({report_sources(text)}, the code is "
        f"{source_version()} now): write it again with {REGENERATE}")
    assert EVERY in text.splitlines()[0]
    names = set(figures(text))
    plain = {(n.split()[0], n.split()[1], (design(n) or "rows1")) for n in names
             if not {"resident", "spread", "cluster"} & set(n.split()) and not n.startswith("adam")}
    assert plain == {(cell, role, f"rows{rows}") for cell in cells.names()
                     for role in ("forward", "backward") for rows in ROWS_PER_THREAD}
    assert kernels_of_kind(names, "resident") == expected_resident()
    assert kernels_of_kind(names, "spread") == expected_spread()
    assert kernels_of_kind(names, "resident spread") == expected_resident()
    assert kernels_of_kind(names, "cluster") == expected_spread()
    assert kernels_of_kind(names, "resident cluster") == expected_resident()
    assert "adam float32" in names
    within_budget(text)


def nearest_their_budgets(rows: dict[str, tuple[int, ...]]) -> list[str]:
    """The kernels CI compiles itself: every cell's forward and backward at one row a thread
    (so every cell compiles with CI's toolchain), Adam, and of every other design (rows a
    thread, R resident, spread blocks) the two kernels with the most registers and the one
    with the most shared memory, by the committed report: those a change tips over first."""
    chosen = {name for name in rows if design(name) == ""}
    for kind in {design(name) for name in rows} - {""}:
        members = [name for name in rows if design(name) == kind]
        chosen.update(sorted(members, key=lambda n: (-rows[n][0], n))[:2])
        chosen.add(min(members, key=lambda n: (-rows[n][1], n)))
    return sorted(chosen)


def test_the_kernels_nearest_their_budgets_compile_for_sm90_within_budget(tmp_path):
    """Compiled here, with this machine's NVVM and ptxas: within budget, and where the
    code and toolchain are the committed report's, the very figures it lists."""
    committed = REPORT.read_text()
    names = nearest_their_budgets(figures(committed))
    assert len(names) < len(figures(committed)) / 3  # what keeps CI within its time
    out = tmp_path / "cuda_resources.txt"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}  # the simulator compiles no PTX
    result = subprocess.run([sys.executable, "-m", "ablate.cuda.resources", "--out", str(out),
                             "--only", ",".join(names)],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    text = out.read_text()
    found = figures(text)
    assert sorted(found) == names
    assert {name.split()[0] for name in found if not name.startswith("adam")} == set(cells.names())
    within_budget(text)
    assert result.returncode == 0
    if made_alike(text) == made_alike(committed):  # the same code, NVVM and ptxas
        for name in names:
            assert found[name] == figures(committed)[name], name


def made_alike(text: str) -> list[str]:
    """A report's lines on what made it: numba, numba-cuda and ptxas, the sources' hash."""
    return [line for line in text.splitlines() if line.startswith(("# numba", "# sources"))]


def test_only_names_unknown_kernels_in_one_line():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    result = subprocess.run([sys.executable, "-m", "ablate.cuda.resources",
                             "--only", "lstm forwrd float32"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: no such kernel: 'lstm forwrd float32'; names are the report's first column, "
        "as 'lstm backward float32 rows8 resident' or 'adam float32'"]


def test_a_report_of_other_code_names_another_source_hash(tmp_path, monkeypatch):
    """The hash follows the code of the kernels' sources, not their comments."""
    from ablate import store
    from ablate.cuda import resources

    package = tmp_path / "ablate"
    for folder in ("cells", "kernels", "cuda"):
        (package / folder).mkdir(parents=True)
        (package / folder / "a.py").write_text("X = 1\n")
    monkeypatch.setattr(store, "_PACKAGE", package)
    before = resources.source_version()
    (package / "cuda" / "a.py").write_text("X = 1  # a comment\n")
    assert resources.source_version() == before
    (package / "cuda" / "a.py").write_text("X = 2\n")
    assert resources.source_version() != before
    (package / "cuda" / "a.py").write_text("X = 1\n")
    (package / "kernels" / "b.py").write_text("Y = 1\n")
    assert resources.source_version() != before
    assert resources.report_sources(f"# sources: {before} (…)\n") == before


def test_budget_rules_catch_spills_shared_memory_and_registers():
    from ablate.cuda.resources import Usage, problems

    fine = Usage("a forward float32", 128, 0, 0, 0, 0)
    assert problems([fine], 256) == []
    spill = fine._replace(kernel="b", spill_stores=8, spill_loads=8)
    shared = fine._replace(kernel="c", shared=64 * 1024)
    registers = fine._replace(kernel="d", registers=255)
    found = problems([spill, shared, registers], 512)
    assert [line.split(":")[0] for line in found] == ["b", "c", "d"]
