"""Timelines in the Trace Event Format (what Perfetto and ``chrome://tracing`` open).

The format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
A JSON object whose ``traceEvents`` list holds one *complete* event (``"ph": "X"``) per task, with
``ts`` and ``dur`` in microseconds, ``pid``/``tid`` naming its track and ``args`` carrying what
shoal knows of it (job, index, ok, worker, pid, approximate). Metadata events (``"ph": "M"``) name
the tracks after the workers; instants (``"ph": "i"``) record workers starting and ending; the
caller's notes are complete or instant events of category ``note``. ``ts`` counts from the
timeline's first moment; ``otherData.origin`` keeps that moment (``time.monotonic()`` seconds), so
:func:`load_into` gives back the original times.
"""

from __future__ import annotations

import json
import os
from typing import IO, TYPE_CHECKING, Any

from shoal._core._events import TaskEvent, WorkerEvent
from shoal.observe._layout import natural_key, task_label

if TYPE_CHECKING:
    from shoal.observe.timeline import Timeline

__all__ = ["dump", "load_into", "to_trace"]

FORMAT = "shoal-timeline/1"


def _us(seconds: float) -> float:
    """Microseconds, to the nanosecond."""
    return round(seconds * 1e6, 3)


def to_trace(timeline: Timeline) -> dict[str, Any]:
    """The timeline as a Trace Event Format object."""
    with timeline._lock:
        tasks = list(timeline.events)
        changes = list(timeline.worker_events)
        notes = list(timeline.notes)
    times = [e.start for e in tasks] + [c.time for c in changes] + [n.start for n in notes]
    origin = min(times, default=0.0)

    # One track (pid, tid) per worker: a process worker is its own process (tid = pid); the
    # threads of a thread pool share the parent's pid and get a tid each. Notes go on tracks of
    # the timeline's own process.
    names = sorted({e.worker for e in tasks} | {c.worker for c in changes}, key=natural_key)
    pids: dict[str, int | None] = {}
    for task in tasks:
        pids.setdefault(task.worker, task.pid)
    for change in changes:
        pids.setdefault(change.worker, change.pid)
    per_pid: dict[int, int] = {}
    for name in names:
        per_pid[pids[name] or 0] = per_pid.get(pids[name] or 0, 0) + 1
    tracks: dict[str, tuple[int, int]] = {}
    for number, name in enumerate(names, 1):
        pid = pids[name] or 0
        # A process that is one worker: its main thread's tid is its pid, as Perfetto expects.
        alone = per_pid[pid] == 1 and pid not in (0, timeline.pid)
        tracks[name] = (pid, pid if alone else number)
    rows = sorted({n.row for n in notes})
    note_tracks = {row: (timeline.pid, len(names) + i) for i, row in enumerate(rows, 1)}

    out: list[dict[str, Any]] = []
    for sort_index, (name, (pid, tid)) in enumerate([*tracks.items(), *note_tracks.items()]):
        meta = {"ph": "M", "pid": pid, "tid": tid}
        out.append({"name": "thread_name", **meta, "args": {"name": name}})
        out.append({"name": "thread_sort_index", **meta, "args": {"sort_index": sort_index}})
    for pid in sorted({p for p, _ in [*tracks.values(), *note_tracks.values()]}):
        label = "caller" if pid == timeline.pid else f"worker process {pid}"
        if pid == timeline.pid and any(p == pid for p, _ in tracks.values()):
            label = "caller and its threads"
        out.append(
            {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": label}}
        )
    for e in tasks:
        pid, tid = tracks[e.worker]
        out.append(
            {
                "name": task_label(e) + ("" if e.ok else " (failed)"),
                "cat": "task",
                "ph": "X",
                "ts": _us(e.start - origin),
                "dur": _us(e.end - e.start),
                "pid": pid,
                "tid": tid,
                # The legacy viewer's reserved colors; Perfetto colors by name.
                "cname": "good" if e.ok else "terrible",
                "args": {
                    "job": e.job,
                    "index": e.index,
                    "ok": e.ok,
                    "worker": e.worker,
                    "pid": e.pid,
                    "approximate": e.approximate,
                    "count": e.count,
                },
            }
        )
    for c in changes:
        pid, tid = tracks[c.worker]
        out.append(
            {
                "name": f"worker {c.what}",
                "cat": "worker",
                "ph": "i",
                "s": "t",
                "ts": _us(c.time - origin),
                "pid": pid,
                "tid": tid,
                "args": {"worker": c.worker, "pid": c.pid, "what": c.what, "detail": c.detail},
            }
        )
    for n in notes:
        pid, tid = note_tracks[n.row]
        note: dict[str, Any] = {
            "name": n.text,
            "cat": "note",
            "ts": _us(n.start - origin),
            "pid": pid,
            "tid": tid,
            "args": {"row": n.row},
        }
        if n.end > n.start:
            note.update(ph="X", dur=_us(n.end - n.start))
        else:
            note.update(ph="i", s="t")
        out.append(note)
    other: dict[str, Any] = {
        "format": FORMAT,
        "origin": origin,
        "clock": "time.monotonic",
        "caller_pid": timeline.pid,
    }
    if timeline.title:
        other["title"] = timeline.title
    return {"traceEvents": out, "displayTimeUnit": "ms", "otherData": other}


def dump(data: dict[str, Any], dest: str | os.PathLike[str] | IO[str]) -> None:
    """Write a trace as JSON, one event per line (readable in a diff, loadable anywhere)."""
    lines = [json.dumps(e, separators=(",", ":")) for e in data["traceEvents"]]
    head = {k: v for k, v in data.items() if k != "traceEvents"}
    text = (
        '{"traceEvents":[\n'
        + ",\n".join(lines)
        + "\n],\n"
        + json.dumps(head, separators=(",", ":"))[1:]
        + "\n"
    )
    if isinstance(dest, str | os.PathLike):
        with open(dest, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        dest.write(text)


def load_into(timeline: Timeline, source: str | os.PathLike[str] | IO[str]) -> None:
    """Fill an empty timeline from a trace file.

    Raises:
        ValueError: the file is not a Trace Event Format object (or list).
    """
    from shoal.observe.timeline import Note

    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as f:
            data = json.load(f)
    else:
        data = json.load(source)
    if isinstance(data, list):  # the format's bare-array form
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ValueError("not a Chrome trace: no traceEvents list")
    other = data.get("otherData") or {}
    origin = float(other.get("origin", 0.0))
    timeline.title = str(other.get("title", ""))
    if "caller_pid" in other:
        timeline.pid = int(other["caller_pid"])
    names: dict[tuple[Any, Any], str] = {}
    for e in data["traceEvents"]:
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            names[(e.get("pid"), e.get("tid"))] = str(e.get("args", {}).get("name", ""))

    def seconds(us: Any) -> float:
        return origin + float(us) / 1e6

    for position, e in enumerate(data["traceEvents"]):
        ph, cat, args = e.get("ph"), e.get("cat"), e.get("args") or {}
        track = names.get((e.get("pid"), e.get("tid")), f"{e.get('pid')}/{e.get('tid')}")
        if cat == "note":
            start = seconds(e["ts"])
            end = start + float(e.get("dur", 0.0)) / 1e6 if ph == "X" else start
            timeline.notes.append(
                Note(str(e.get("name", "")), start, end, str(args.get("row", track)))
            )
        elif cat == "worker" and ph in ("i", "I"):
            timeline.worker_events.append(
                WorkerEvent(
                    str(args.get("worker", track)),
                    args.get("pid", e.get("pid")),
                    seconds(e["ts"]),
                    str(args.get("what", e.get("name", ""))),
                    str(args.get("detail", "")),
                )
            )
        elif ph == "X" and cat in ("task", None):
            start = seconds(e["ts"])
            timeline.events.append(
                TaskEvent(
                    job=int(args.get("job", 0)),
                    index=int(args.get("index", position)),
                    worker=str(args.get("worker", track)),
                    pid=args.get("pid", e.get("pid")),
                    start=start,
                    end=start + float(e.get("dur", 0.0)) / 1e6,
                    ok=bool(args.get("ok", True)),
                    approximate=bool(args.get("approximate", False)),
                    count=int(args.get("count", 1)),
                )
            )
