"""How the report draws: one colour and marker per cell, kept across every figure.

Colours are Kelly's maximum-contrast set, assigned by hand so that the cells the claims
compare most (lstm, rnn, gru, the seed ablations) get the most distinct ones; a cell this
table does not know gets a grey. Cells and tasks are listed in registry order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

CELL_COLOURS = {
    "lstm": "#222222",
    "rnn": "#BE0032",
    "gru": "#0067A5",
    "lstm_peephole": "#875692",
    "nfg": "#F38400",
    "noaf": "#008856",
    "single_net": "#E68FAC",
    "net_readout": "#848482",
    "sigmoid_input": "#882D17",
    "cifg": "#A1CAF1",
    "sigmoid_readout": "#C2B280",
    "use_gate": "#604E97",
    "lstm97": "#8DB600",
    "nig": "#F6A600",
    "nog": "#B3446C",
    "niaf": "#654522",
    "fgr": "#F99379",
    "irnn": "#E25822",
    "mingru": "#2B3D26",
    "minlstm": "#DCD300",
}
UNKNOWN_COLOUR = "#AAAAAA"
_MARKERS = "os^vDP*Xph<>d8H"


def cell_names() -> tuple[str, ...]:
    from ablate import cells

    return tuple(cells.names())


def colour(cell: str) -> str:
    return CELL_COLOURS.get(cell, UNKNOWN_COLOUR)


def marker(cell: str) -> str:
    names = cell_names()
    index = names.index(cell) if cell in names else len(names)
    return _MARKERS[index % len(_MARKERS)]


def order_cells(cells: Iterable[str]) -> list[str]:
    """Distinct cells in registry order (unknown names last, alphabetically)."""
    names = cell_names()
    unique = set(cells)
    return sorted(unique, key=lambda c: (names.index(c) if c in names else len(names), c))


def order_tasks(labels: Iterable[str]) -> list[str]:
    """Distinct task labels in registry order of their task name, variants after the default."""
    from ablate import tasks

    names = tasks.names()
    unique = set(labels)

    def key(label: str):
        name = label.split(" ", 1)[0]
        return (names.index(name) if name in names else len(names), label != name, label)

    return sorted(unique, key=key)


def text_colour(cell: str) -> str:
    """The cell's colour darkened until text in it reads on white (light hues only)."""
    from matplotlib.colors import to_hex, to_rgb

    rgb = to_rgb(colour(cell))
    for _ in range(10):
        luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
        if luminance <= 0.45:
            break
        rgb = tuple(0.8 * c for c in rgb)
    return to_hex(rgb)


# Line figures draw at most this many cells per panel besides lstm, the reference drawn in
# every panel; cells are grouped by what they ask, in registry order.
MAX_LINES = 5
FAMILIES = (
    ("Greff variants",
     ("lstm_peephole", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr")),
    ("seed ablations", ("single_net", "net_readout", "sigmoid_input", "sigmoid_readout",
                        "use_gate", "lstm97")),
    ("other cells", ("rnn", "irnn", "gru", "mingru", "minlstm")),
)
REFERENCE = "lstm"


def cell_groups(cells: Iterable[str]) -> list[tuple[str, list[str]]]:
    """(group name, cells) for line figures: each family present, split into chunks of at most
    MAX_LINES cells, with lstm first in every group when it was run; unknown cells last."""
    present = order_cells(cells)
    known = {cell for _, members in FAMILIES for cell in members}
    families = [(name, [c for c in present if c in members]) for name, members in FAMILIES]
    families.append(("more cells", [c for c in present if c not in known and c != REFERENCE]))
    reference = [REFERENCE] if REFERENCE in present else []
    groups = []
    for name, members in families:
        n_chunks = math.ceil(len(members) / MAX_LINES)
        size = math.ceil(len(members) / n_chunks) if n_chunks else 1
        chunks = [members[k:k + size] for k in range(0, len(members), size)]
        for n, chunk in enumerate(chunks):
            label = name if len(chunks) == 1 else f"{name} ({n + 1}/{len(chunks)})"
            groups.append((label, reference + chunk))
    if not groups and reference:
        groups.append(("lstm", reference))
    return groups
