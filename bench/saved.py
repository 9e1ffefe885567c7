"""Save a run's raw results as JSON (``docs/benchmarks.json``) and load them back, so the
tables and the chart can be redrawn (``--from-json``) without running again."""

from __future__ import annotations

import json
from typing import Any

from bench.runner import Cell

__all__ = ["dump", "load"]


def _cell_out(cell: Cell) -> dict[str, Any]:
    return {
        "times": cell.times,
        "failures": [{"status": f["status"], "error": f.get("error", "")} for f in cell.failures],
        "leftovers": cell.leftovers,
    }


def _cell_in(raw: dict[str, Any]) -> Cell:
    return Cell(list(raw["times"]), list(raw["failures"]), list(raw["leftovers"]))


def dump(path: str, meta: dict[str, Any], results: dict[str, dict[str, Cell]],
         sweeps: dict[str, dict[int, dict[str, Cell]]]) -> None:
    doc = {
        "meta": meta,
        "results": {w: {k: _cell_out(c) for k, c in cells.items()} for w, cells in results.items()},
        "sweeps": {
            kind: {str(x): {k: _cell_out(c) for k, c in cells.items()} for x, cells in s.items()}
            for kind, s in sweeps.items()
        },
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def load(path: str) -> tuple[dict[str, Any], dict[str, dict[str, Cell]],
                             dict[str, dict[int, dict[str, Cell]]]]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    results = {w: {k: _cell_in(c) for k, c in cells.items()} for w, cells in doc["results"].items()}
    sweeps = {
        kind: {int(x): {k: _cell_in(c) for k, c in cells.items()} for x, cells in s.items()}
        for kind, s in doc["sweeps"].items()
    }
    return doc["meta"], results, sweeps
