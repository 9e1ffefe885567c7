"""Timeline: recording (thread-safe), the Chrome trace and its round trip, the text Gantt."""

from __future__ import annotations

import io
import json
import re
import threading
from pathlib import Path

import pytest

import shoal
from shoal._core._events import EventHub, TaskEvent, WorkerEvent
from shoal.observe import Timeline

from ._helpers import BASE, synthetic

LIVE = 60.0


def _boom(x: int) -> int:
    if x == 3:
        raise ValueError(x)
    return x * x


# -- recording -----------------------------------------------------------------------------------


def test_timeline_is_a_listener_and_records_from_many_threads() -> None:
    hub = EventHub()
    timeline = Timeline()
    hub.add(timeline)
    assert hub.active
    go = threading.Barrier(8)

    def emit(worker: int) -> None:
        go.wait()
        for i in range(2000):
            hub.task_done(TaskEvent(worker, i, f"w{worker}", None, i, i + 0.5, i % 7 != 0))
        hub.worker_changed(WorkerEvent(f"w{worker}", None, 0.0, "exited"))

    threads = [threading.Thread(target=emit, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LIVE)
    assert len(timeline) == len(timeline.events) == 16000
    assert len(timeline.worker_events) == 8
    for w in range(8):
        mine = [e.index for e in timeline.events if e.job == w]
        assert mine == list(range(2000))  # each thread's events in its own order, none lost
    tasks = timeline.tasks()
    assert [e.start for e in tasks] == sorted(e.start for e in tasks)
    assert len(timeline.failed()) == 8 * len(range(0, 2000, 7))


def test_marks_regions_merge_and_extend() -> None:
    a = Timeline()
    a.task_done(TaskEvent(0, 0, "w1", 1, BASE, BASE + 1, True))
    a.mark("start", at=BASE)
    with a.region("work"):
        pass
    b = Timeline()
    b.extend([TaskEvent(0, 0, "w2", 2, BASE + 1, BASE + 2, False)])
    merged = Timeline.merge(a, b, title="both")
    assert merged.title == "both"
    assert [e.worker for e in merged.tasks()] == ["w1", "w2"]
    assert [n.text for n in merged.notes] == ["start", "work"]
    assert merged.notes[0].start == merged.notes[0].end == BASE
    assert merged.notes[1].end >= merged.notes[1].start
    assert merged.workers() == ["w1", "w2"]


# -- Chrome trace --------------------------------------------------------------------------------


def test_chrome_trace_has_the_required_fields(tmp_path: Path) -> None:
    timeline = synthetic()
    path = tmp_path / "trace.json"
    timeline.to_chrome_trace(path)
    data = json.loads(path.read_text())
    assert data["displayTimeUnit"] == "ms"
    events = data["traceEvents"]
    tasks = [e for e in events if e.get("cat") == "task"]
    assert len(tasks) == len(timeline.events) == 40
    origin = data["otherData"]["origin"]
    by_key = {(e.job, e.index): e for e in timeline.events}
    for e in tasks:
        assert {"name", "ph", "ts", "dur", "pid", "tid", "args"} <= set(e)
        assert e["ph"] == "X"
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert {"job", "index", "ok"} <= set(e["args"])
        source = by_key[(e["args"]["job"], e["args"]["index"])]
        # ts and dur are microseconds.
        assert e["ts"] == pytest.approx((source.start - origin) * 1e6, abs=0.01)
        assert e["dur"] == pytest.approx((source.end - source.start) * 1e6, abs=0.01)
        assert e["args"]["ok"] is source.ok
        assert e["pid"] == source.pid  # a process worker is its own process in the trace
    # Each worker's track is named after it; failed tasks say so.
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    for e in tasks:
        assert names[(e["pid"], e["tid"])] == e["args"]["worker"]
    assert sum(1 for e in tasks if e["name"].endswith("(failed)")) == 3
    # The caller's mark and region, and the worker's death, are in it too.
    notes = [e for e in events if e.get("cat") == "note"]
    assert sorted((e["ph"], e["name"]) for e in notes) == [("X", "other work"), ("i", "Mark")]
    assert [e["args"]["what"] for e in events if e.get("cat") == "worker"].count("died") == 1


def test_threads_of_one_process_get_a_track_each() -> None:
    timeline = Timeline()
    for i, name in enumerate(["ShoalThreadPool_0", "ShoalThreadPool_1", "ShoalThreadPool_0"]):
        timeline.task_done(TaskEvent(0, i, name, 77, BASE + i, BASE + i + 0.5, True))
    events = timeline.to_trace_dict()["traceEvents"]
    tracks = {(e["pid"], e["tid"]) for e in events if e.get("cat") == "task"}
    assert len(tracks) == 2 and {pid for pid, _ in tracks} == {77}


def test_chrome_trace_round_trips(tmp_path: Path) -> None:
    timeline = synthetic()
    path = tmp_path / "trace.json"
    timeline.to_chrome_trace(path)
    back = Timeline.load(path)
    assert back.title == "synthetic"
    assert len(back.events) == len(timeline.events)
    key = lambda e: (e.job, e.index)  # noqa: E731
    for a, b in zip(sorted(timeline.events, key=key), sorted(back.events, key=key), strict=True):
        assert (a.job, a.index, a.worker, a.pid, a.ok, a.approximate, a.count) == (
            b.job,
            b.index,
            b.worker,
            b.pid,
            b.ok,
            b.approximate,
            b.count,
        )
        assert b.start == pytest.approx(a.start, abs=1e-8)
        assert b.end == pytest.approx(a.end, abs=1e-8)
    assert [(w.worker, w.what, w.detail) for w in back.worker_events] == [
        (w.worker, w.what, w.detail) for w in timeline.worker_events
    ]
    assert [(n.text, n.row) for n in back.notes] == [(n.text, n.row) for n in timeline.notes]
    # The pictures of the copy are the pictures of the original.
    assert back.text_gantt() == timeline.text_gantt()
    # Writing the copy gives the same file.
    again = tmp_path / "again.json"
    back.to_chrome_trace(again)
    assert json.loads(again.read_text()) == json.loads(path.read_text())


def test_chrome_trace_to_and_from_file_objects() -> None:
    buffer = io.StringIO()
    synthetic(n=5).to_chrome_trace(buffer)
    buffer.seek(0)
    assert len(Timeline.load(buffer).events) == 5


def test_load_refuses_what_is_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="traceEvents"):
        Timeline.load(path)


# -- the text Gantt ------------------------------------------------------------------------------


def test_text_gantt_shape() -> None:
    timeline = synthetic()
    text = timeline.text_gantt(width=72)
    lines = text.splitlines()
    rows = [
        "ShoalPoolWorker-1",
        "ShoalPoolWorker-2",
        "ShoalPoolWorker-3",
        "ShoalPoolWorker-4",
        "main",
    ]
    assert [line.split(" |")[0].strip() for line in lines[:5]] == rows
    for line in lines[:5]:
        assert len(line) == 72 and line.endswith("|"), line
    axis, ticks = lines[5], lines[6]
    assert set(axis.strip()) == {"+", "-"}
    assert ticks.split()[0] == "0.0" and ticks.endswith(" s")
    assert lines[7].startswith("40 tasks on 4 workers in ") and "3 failed (!)" in lines[7]
    assert "* 0.02 s Mark" in lines[8]
    # The failed tasks are marked on their workers' rows, nowhere else.
    failed_workers = {e.worker for e in timeline.failed()}
    for line in lines[:4]:
        assert ("!" in line) == (line.split(" |")[0].strip() in failed_workers)
    # Each task has its own character: 0-9 a-z A-D for 40 tasks (some hidden under a neighbour
    # when the chart is narrow, but never on another worker's row).
    bars = {line.split(" |")[0].strip(): line.split("|")[1] for line in lines[:4]}
    for i, e in enumerate(sorted(timeline.events, key=lambda e: e.index)):
        char = "0123456789abcdefghijklmnopqrstuvwxyzABCD"[i]
        for worker, bar in bars.items():
            if worker != e.worker:
                assert char not in bar
    # The main row: its mark, then its region.
    main = lines[4].split("|")[1]
    assert main.lstrip().startswith("*") and "~" in main


def test_text_gantt_scales_time_to_columns() -> None:
    timeline = Timeline()
    timeline.task_done(TaskEvent(0, 0, "a", 1, BASE, BASE + 1.0, True))
    timeline.task_done(TaskEvent(0, 1, "b", 2, BASE + 1.0, BASE + 2.0, False))
    lines = timeline.text_gantt(width=44, legend=False).splitlines()
    assert len(lines) == 4
    bar_a, bar_b = (line.split("|")[1] for line in lines[:2])
    assert len(bar_a) == len(bar_b) == 40
    assert bar_a == "0" * 20 + " " * 20
    assert bar_b == " " * 20 + "!" * 20
    assert re.fullmatch(r"  0\.0 +0\.5 +1\.0 +1\.5 +2\.0 s", lines[3]), lines[3]
    assert lines[3].index("1.0") == 2 + 20  # the tick at 1 s sits under column 20


def test_text_gantt_of_nothing() -> None:
    assert Timeline().text_gantt() == "(no tasks)"


# -- a real pool ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_pool_with_trace_fills_its_timeline(kind: str, tmp_path: Path) -> None:
    cls = shoal.Pool if kind == "process" else shoal.ThreadPool
    timeline = Timeline()
    with cls(2, trace=timeline) as pool:
        assert pool.timeline is timeline
        results = [pool.apply_async(_boom, (i,)) for i in range(6)]
        for r in results:
            assert r.wait(LIVE) is None and r.ready()
        squares = pool.map(_boom, [0, 1, 2], chunksize=1)
    assert squares == [0, 1, 4]
    assert len(timeline.events) == 9
    # One job per apply_async, then the map's job with indices 0-2.
    jobs = sorted({e.job for e in timeline.events})
    assert len(jobs) == 7
    by_job = {j: sorted(e.index for e in timeline.events if e.job == j) for j in jobs}
    assert [len(v) for v in by_job.values()] == [1] * 6 + [3]
    assert by_job[jobs[-1]] == [0, 1, 2]
    # The 4th call raised.
    assert [e.job for e in timeline.events if not e.ok] == [jobs[3]]
    assert len({e.worker for e in timeline.events}) <= 2
    for e in timeline.events:
        assert e.end >= e.start
    path = tmp_path / "t.json"
    timeline.to_chrome_trace(path)
    assert len(Timeline.load(path).events) == 9


def test_trace_true_makes_a_timeline() -> None:
    with shoal.ThreadPool(1, trace=True) as pool:
        pool.map(abs, range(3))
        assert isinstance(pool.timeline, Timeline)
        assert sum(e.count for e in pool.timeline.events) == 3
    with shoal.ThreadPool(1) as pool:
        assert pool.timeline is None
