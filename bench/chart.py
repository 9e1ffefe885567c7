"""``docs/benchmarks.png``: the sweeps and shoal's ratio to the fastest peer per workload."""

from __future__ import annotations

import statistics

from bench.peers import Peer
from bench.report import Row, line_fit
from bench.runner import Cell

__all__ = ["draw"]


def _series(sweep: dict[int, dict[str, Cell]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for x, cells in sweep.items():
        cell = cells.get(key)
        if cell is not None and cell.median is not None:
            xs.append(x)
            ys.append(cell.median)
    return xs, ys


#: One colour per library, the same in every panel; shoal's are the strong ones.
COLOURS = {
    "serial": "grey",
    "mp": "tab:blue",
    "cf": "tab:orange",
    "joblib": "tab:olive",
    "mpire": "tab:cyan",
    "pebble": "tab:brown",
    "shoal_pool": "black",
    "shoal_executor": "tab:purple",
}


def _style(peer: Peer) -> dict[str, object]:
    colour = COLOURS.get(peer.key, "tab:gray")
    if peer.is_shoal:
        return {"linewidth": 2.6, "marker": "o", "color": colour}
    if peer.kind == "serial":
        return {"linewidth": 1.2, "linestyle": ":", "color": colour}
    return {"linewidth": 1.2, "linestyle": "--", "marker": ".", "color": colour}


def draw(path: str, rows: list[Row], sweeps: dict[str, dict[int, dict[str, Cell]]],
         peers: list[Peer], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("tasks", "workers") if sweeps.get(k)] + ["ratios"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "ratios":
            _ratios(ax, rows, peers)
            continue
        sweep = sweeps[panel]
        for peer in peers:
            xs, ys = _series(sweep, peer.key)
            if not xs:
                continue
            if peer.kind == "serial":
                # One workload, measured with each worker count: one line, all its runs.
                times = [t for cells in sweep.values() if peer.key in cells
                         for t in cells[peer.key].times]
                ax.axhline(statistics.median(times), label=peer.label, **_style(peer))
            else:
                ax.plot(xs, ys, label=peer.label, **_style(peer))
            fit = line_fit(sweep, peer.key) if panel == "tasks" and peer.is_shoal else None
            if fit is not None and xs:
                # A straight line (fixed cost + cost per task): what linear growth looks like.
                fixed, slope = fit
                line_xs = [x for x in xs if x >= 10_000]
                ax.plot(line_xs, [fixed + slope * x for x in line_xs], linewidth=1,
                        linestyle=":", color=_style(peer)["color"],
                        label=f"{peer.label} fit: {fixed * 1e3:.1f} ms + "
                              f"{slope * 1e6:.3f} µs x tasks")
        if panel == "tasks":
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("tiny tasks (x*x)")
            ax.set_title("Time vs number of tasks (lower is better)")
        else:
            ax.set_xlabel("workers")
            ax.set_xticks(sorted(sweep))
            ax.set_title("1 ms CPU tasks: time vs workers")
            ax.set_ylim(bottom=0)
        ax.set_ylabel("median seconds, start-up included")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ratios(ax: object, rows: list[Row], peers: list[Peer]) -> None:
    labels = {p.key: p.label for p in peers}
    names, ratios, colours = [], [], []
    for r in rows:
        if r.ratio is None:
            continue
        names.append(f"{r.workload.name}\n(vs {labels.get(r.peer_key or '', '?')})")
        ratios.append(r.ratio)
        colours.append("tab:green" if r.ratio <= 1.05 else "tab:red" if r.ratio > 1.2 else "gold")
    ys = list(range(len(names)))
    # Bars grow from 1.0 (parity): right where shoal is slower, left where it is faster.
    ax.barh(ys, [r - 1 for r in ratios], left=1.0, color=colours)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(ys, names, fontsize=7)
    ax.invert_yaxis()
    for y, ratio in zip(ys, ratios, strict=True):
        ax.text(max(ratio, 1.0), y, f" {ratio:.2f}x", va="center", fontsize=7)
    ax.set_xlabel("shoal time / fastest peer's time, log scale (below 1: shoal faster)")
    ax.set_title("shoal vs the fastest other library")
