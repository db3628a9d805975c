"""Markdown table of two or more checkpoints' Dice side by side, from ``python -m textdiffseg.evaluate --json`` files.

``python scripts/compare_evals.py SET=A.json,B.json [SET=...] [--names shipped,new]``: one row per structure,
one column per set, each cell "A / B" (Dice, 3 decimals; "-" where a structure is absent from a set's cases), and a
last row with the mean over the organs (tumours and lesions apart: they are mostly absent and scored separately).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from textdiffseg.train_data import is_lesion


def _cell(values: list[float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.3f}" for v in values)


def compare(sets: dict[str, list[dict]]) -> str:
    """``sets``: set name -> one evaluation summary per checkpoint (same order in every set)."""
    names = sorted({s for summaries in sets.values() for summary in summaries for s in summary})
    lines = ["| structure | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
    organ_dice: dict[str, list[list[float]]] = {k: [[] for _ in v] for k, v in sets.items()}
    for name in names:
        cells = []
        for key, summaries in sets.items():
            values = []
            for i, summary in enumerate(summaries):
                row = summary.get(name)
                dice = row["dice"] if row and row.get("cases") and row.get("dice") is not None else None
                values.append(dice)
                if dice is not None and not is_lesion(name):
                    organ_dice[key][i].append(dice)
            cells.append(_cell(values) if any(v is not None for v in values) else "")
        if any(cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = [_cell([sum(d) / len(d) if d else None for d in organ_dice[k]]) for k in sets]
    lines.append("| **organ mean** | " + " | ".join(means) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", help="SET=A.json,B.json (one file per checkpoint, the same order everywhere)")
    p.add_argument("--names", help="comma-separated checkpoint names, printed above the table")
    a = p.parse_args(argv)
    sets = {}
    for item in a.sets:
        key, _, files = item.partition("=")
        if not files:
            p.error(f"{item!r}: expected SET=A.json,B.json")
        try:
            sets[key] = [json.loads(Path(f).read_text()) for f in files.split(",")]
        except (OSError, json.JSONDecodeError) as err:
            p.error(f"{item!r}: cannot read an evaluation summary ({err})")
    if a.names:
        print("cells: " + " / ".join(a.names.split(",")))
    print(compare(sets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
