"""A self-contained HTML page showing one or more timelines (no network, no external files).

The timelines travel as JSON inside the page; a small inline script draws each as an SVG Gantt
chart: a row per worker, a bar per task colored by outcome, the caller's notes on rows of their
own. Hovering a bar shows the task and its timing. The page works from ``file://``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shoal.observe._layout import COLORS, Layout, task_label

if TYPE_CHECKING:
    from shoal.observe.timeline import Timeline

__all__ = ["page", "section_data"]


def section_data(title: str, lay: Layout) -> dict[str, Any]:
    """What the page's script draws for one timeline; times in seconds from its start."""
    t0 = lay.t0

    def rel(t: float) -> float:
        return round(t - t0, 6)

    rows = []
    for row in lay.rows:
        rows.append(
            {
                "name": row.name,
                "kind": row.kind,
                "pid": row.pid,
                "tasks": [
                    [rel(e.start), rel(e.end), e.ok, e.job, e.index, e.approximate, task_label(e)]
                    for e in row.tasks
                ],
                "notes": [[text, rel(s), rel(e)] for text, s, e in row.notes],
                "changes": [
                    [rel(t), what, detail]
                    for t, what, detail in row.changes
                    if lay.t0 <= t <= lay.t1
                ],
            }
        )
    summary = lay.summary(decimals=3)
    return {"title": title, "span": round(lay.span, 6), "rows": rows, "summary": summary}


_STYLE = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 24px;
       color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 17px; margin: 22px 0 4px; }
p.summary { margin: 0 0 6px; color: #555; font-size: 13px; }
.legend { font-size: 12px; color: #444; margin-bottom: 8px; }
.legend span.sw { display: inline-block; width: 12px; height: 12px; margin: 0 4px -2px 12px; }
svg.gantt { width: 100%; max-width: 1400px; display: block; }
svg.gantt text { font-size: 12px; fill: #333; }
svg.gantt .grid { stroke: #e3e3e3; stroke-width: 1; }
svg.gantt .task:hover, svg.gantt .note:hover { stroke: #000; stroke-width: 1.5; }
#tip { position: fixed; display: none; pointer-events: none; background: #222; color: #fff;
       font-size: 12px; padding: 5px 8px; border-radius: 4px; white-space: pre; z-index: 9; }
"""

# The script draws every section into its <div class="timeline">. Kept free of `</`, so the
# page's own </script> ends it.
_SCRIPT = r"""
(function () {
  var C = __COLORS__;
  var NS = "http://www.w3.org/2000/svg";
  var tip = document.getElementById("tip");
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function ticks(span, most) {
    if (!(span > 0)) return [0];
    var raw = span / most, mag = Math.pow(10, Math.floor(Math.log10(raw))), step = 10 * mag;
    [1, 2, 2.5, 5, 10].some(function (m) { if (m * mag >= raw) { step = m * mag; return true; } });
    var out = [], n = Math.ceil(span / step - 1e-9);
    for (var i = 0; i <= n; i++) out.push(+(i * step).toFixed(10));
    return out;
  }
  function fmt(t) { return t < 1 ? (t * 1000).toFixed(1) + " ms" : t.toFixed(3) + " s"; }
  function hover(node, text) {
    node.addEventListener("mousemove", function (ev) {
      tip.textContent = text; tip.style.display = "block";
      tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 14) + "px";
    });
    node.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  }
  function draw(box, d) {
    var rows = d.rows, longest = 0;
    rows.forEach(function (r) { longest = Math.max(longest, Math.min(40, r.name.length)); });
    var W = 1100, LABEL = Math.max(120, 16 + 7.5 * longest), ROW = 24, BAR = 16, TOP = 8;
    var AXIS = 30, plot = W - LABEL - 20;
    var ts = ticks(d.span, 8), end = ts[ts.length - 1] || 1, sx = plot / end;
    var H = TOP + rows.length * ROW + AXIS;
    var svg = el("svg", {"class": "gantt", viewBox: "0 0 " + W + " " + H,
                         "data-rows": rows.length}, box);
    ts.forEach(function (t, i) {
      var x = LABEL + t * sx;
      el("line", {"class": "grid", x1: x, x2: x, y1: TOP, y2: TOP + rows.length * ROW}, svg);
      var lab = el("text", {x: x, y: H - 10, "text-anchor": "middle"}, svg);
      lab.textContent = (i === ts.length - 1) ? t + " s" : String(t);
    });
    rows.forEach(function (r, i) {
      var y = TOP + i * ROW, g = el("g", {"class": "row " + r.kind, "data-name": r.name}, svg);
      if (i % 2 === 0) el("rect", {x: 0, y: y, width: W, height: ROW, fill: "#f6f7f9"}, g);
      var name = el("text", {x: 8, y: y + ROW / 2 + 4}, g);
      name.textContent = r.name.length > 40 ? r.name.slice(0, 39) + "\u2026" : r.name;
      hover(name, r.name + (r.pid ? "\npid " + r.pid : ""));
      r.tasks.forEach(function (t) {
        var x = LABEL + t[0] * sx, w = Math.max(1, (t[1] - t[0]) * sx);
        var color = !t[2] ? C.failed : (t[5] ? C.approximate : C.ok);
        var bar = el("rect", {"class": "task " + (t[2] ? "ok" : "failed"), x: x,
                              y: y + (ROW - BAR) / 2, width: w, height: BAR, rx: 2,
                              fill: color, stroke: "#fff", "stroke-width": 0.5}, g);
        hover(bar, t[6] + (t[2] ? "" : "  FAILED") + "\n" + r.name +
              "\nstart " + fmt(t[0]) + ", end " + fmt(t[1]) + "\nduration " + fmt(t[1] - t[0]) +
              (t[5] ? "\n(timed with its chunk)" : ""));
      });
      r.notes.forEach(function (n) {
        var x = LABEL + n[1] * sx, node;
        if (n[2] > n[1]) {
          node = el("rect", {"class": "note", x: x, y: y + ROW / 2 - 4, height: 8, rx: 2,
                             width: Math.max(1, (n[2] - n[1]) * sx), fill: C.note}, g);
          hover(node, n[0] + "\n" + fmt(n[1]) + " to " + fmt(n[2]));
        } else {
          node = el("path", {"class": "note mark", fill: C.mark,
                             d: "M" + x + " " + (y + 4) + "l5 8l-5 8l-5 -8z"}, g);
          hover(node, n[0] + "\nat " + fmt(n[1]));
        }
      });
      r.changes.forEach(function (c) {
        if (c[1] === "started") return;
        var x = LABEL + c[0] * sx;
        var m = el("path", {"class": "change", stroke: C.failed, "stroke-width": 2,
                            d: "M" + (x - 4) + " " + (y + 4) + "l8 16m0 -16l-8 16"}, g);
        hover(m, r.name + " " + c[1] + " at " + fmt(c[0]) + (c[2] ? "\n" + c[2] : ""));
      });
    });
    el("line", {x1: LABEL, x2: LABEL + plot, y1: TOP + rows.length * ROW,
                y2: TOP + rows.length * ROW, stroke: "#888"}, svg);
  }
  var data = JSON.parse(document.getElementById("timelines").textContent);
  var boxes = document.querySelectorAll("div.timeline");
  data.forEach(function (d, i) { draw(boxes[i], d); });
  document.body.setAttribute("data-drawn", String(data.length));
})();
"""


def _json_for_script(value: Any) -> str:
    # Inside <script>, "</" would end the element early; "<\/" is the same string to JSON.
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def page(sections: Sequence[tuple[str, Timeline]], *, title: str) -> str:
    """The HTML of a page with one Gantt chart per (heading, timeline)."""
    data = [section_data(name, timeline.layout()) for name, timeline in sections]
    legend = "".join(
        f'<span class="sw" style="background:{COLORS[key]}"></span>{label}'
        for key, label in (
            ("ok", "task"),
            ("failed", "failed task"),
            ("approximate", "task timed with its chunk"),
            ("note", "caller's region"),
            ("mark", "caller's mark"),
        )
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<div class="legend">{legend}</div>',
    ]
    for d in data:
        if len(data) > 1 or d["title"] != title:
            parts.append(f"<h2>{html.escape(d['title'])}</h2>")
        parts.append(f'<p class="summary">{html.escape(d["summary"])}</p>')
        parts.append('<div class="timeline"></div>')
        if not d["rows"]:
            parts.append("<p>(no tasks)</p>")
    parts += [
        '<div id="tip"></div>',
        f'<script type="application/json" id="timelines">{_json_for_script(data)}</script>',
        "<script>" + _SCRIPT.replace("__COLORS__", json.dumps(COLORS)) + "</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
