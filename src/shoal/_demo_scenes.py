"""The scenes of ``shoal demo``: one concept of the multiprocessing tutorial each.

Every scene runs real pools with ``trace=`` timelines, stamps what the main program does on the
timeline (``mark``, ``region``), and records *claims*: what the run showed, checked against the
timeline. A *hard* claim is something shoal guarantees (a failure means shoal misbehaved); a
*soft* one depends on the machine's pace or on the standard library (a busy machine can delay the
main process by more than a scaled-down sleep).

Public API only (``import shoal`` and ``shoal.observe``). The task functions live in this
importable module, so workers receive them by reference under every start method.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing import Manager
from typing import Any, NamedTuple

import shoal
from shoal.observe import Timeline

__all__ = ["SCENES", "Scene", "SceneInfo"]


class Scene:
    """What a scene works with (its pace, its timelines) and what it reports (its claims)."""

    def __init__(self, sleep: float, say: Callable[[str], None]) -> None:
        #: The tutorial's 3 s sleep, scaled.
        self.sleep = sleep
        self.say = say
        self.timelines: list[tuple[str, Timeline]] = []
        #: (held, hard, what it shows)
        self.checks: list[tuple[bool, bool, str]] = []

    def timeline(self, label: str = "") -> Timeline:
        """A new timeline for this scene (pass it to a pool as ``trace=``)."""
        timeline = Timeline(title=label)
        self.timelines.append((label, timeline))
        return timeline

    def claim(self, held: bool, shown: str, missed: str, *, hard: bool = True) -> None:
        self.checks.append((held, hard, shown if held else missed))


# -- task functions (run in the workers) ---------------------------------------------------------


def burn(cpu_seconds: float) -> float:
    """CPU-bound work: compute until this thread has used ``cpu_seconds`` of CPU time.

    Measured in CPU time, not wall time, so the work is the same wherever it runs: a thread that
    waits for the GIL uses no CPU time and needs longer by the clock."""
    began = time.thread_time()
    total = 0
    while time.thread_time() - began < cpu_seconds:
        total += sum(i * i for i in range(2000))
    return time.thread_time() - began


def download(name: str, seconds: float) -> str:
    """A download: waits ``seconds`` (on the network, say), then hands back its file."""
    time.sleep(seconds)
    return f"{name} downloaded"


def square_slowly(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


def nested_pool(n: int, seconds: float) -> tuple[int, bool, list[int], list[Any]]:
    """A task that starts its own pool: (its pid, daemon?, the inner results, inner events)."""
    with shoal.Pool(2, trace=True) as inner:
        squares = inner.starmap(square_slowly, [(i, seconds) for i in range(n)], chunksize=1)
        events = list(inner.timeline.events) if inner.timeline is not None else []
    return os.getpid(), multiprocessing.current_process().daemon, squares, events


def append_pair(i: int, shared: Any) -> int:
    """The tutorial's shared-list task: append ``[i, i + 1]``; returns this worker's pid."""
    shared.append([i, i + 1])
    return os.getpid()


def append_to_copy(i: int, plain: list[Any]) -> int:
    """The same append to a plain list: the worker's copy grows, the caller's list does not."""
    plain.append([i, i + 1])
    return len(plain)


def produce(queue: Any, n: int, gap: float) -> list[tuple[str, float]]:
    """Put ``n`` messages on ``queue``, ``gap`` seconds apart, then None: (message, when)."""
    sent = []
    for i in range(n):
        time.sleep(gap)
        message = f"message {i}"
        sent.append((message, time.monotonic()))
        queue.put(message)
    queue.put(None)
    return sent


def consume(queue: Any, limit: float) -> list[tuple[str, float]]:
    """Take messages off ``queue`` until None: (message, when). ``limit``: a ceiling per wait,
    so a lost producer ends this task with an error instead of a hang."""
    got = []
    while (message := queue.get(timeout=limit)) is not None:
        got.append((message, time.monotonic()))
    return got


# -- the scenes ----------------------------------------------------------------------------------


def parallelism(scene: Scene) -> None:
    cpu = scene.sleep / 2  # CPU time stretches on a busy machine; sleeps do not
    walls: dict[str, float] = {}
    for label, cls in (
        ("ThreadPool(2): threads", shoal.ThreadPool),
        ("Pool(2): processes", shoal.Pool),
    ):
        timeline = scene.timeline(label)
        with cls(2, trace=timeline) as pool:
            began = time.monotonic()
            used = pool.map(burn, [cpu] * 4, chunksize=1)
            walls[label] = time.monotonic() - began
        scene.say(f"{label}: 4 tasks of {cpu:.2f} s CPU each took {walls[label]:.2f} s")
        scene.claim(
            len(timeline.tasks()) == 4 and all(u >= cpu for u in used),
            f"{label}: every task used its {cpu:.2f} s of CPU",
            f"{label}: {len(timeline.tasks())} of 4 tasks recorded, CPU used {used}",
        )
    threads, processes = walls.values()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    cores = shoal.cpu_count()
    if gil and cores >= 2:
        scene.claim(
            processes < 0.8 * threads,
            f"processes finished in {processes:.2f} s, threads in {threads:.2f} s: the threads "
            "took turns on one core (concurrency), the processes ran at once (parallelism)",
            f"processes took {processes:.2f} s, threads {threads:.2f} s: the machine is busy "
            "(other programs use its cores)",
            hard=False,
        )
    else:
        scene.say(f"(this machine gives us {cores} core(s); GIL enabled: {gil})")


def sync_blocking(scene: Scene) -> None:
    timeline = scene.timeline("Pool(3), apply x4")
    with shoal.Pool(3, trace=timeline) as pool:
        timeline.origin = time.monotonic()
        for i in range(4):
            with timeline.region(f"blocked in apply('file {i}')"):
                value = pool.apply(download, (f"file {i}", scene.sleep))
            scene.say(f"main: apply returned {value!r}")
        timeline.mark("Mark")
        scene.say("main: Mark~ Mark~ Mark~~~~~~")
    tasks = sorted(timeline.tasks(), key=lambda e: e.start)
    apart = all(b.start >= a.end for a, b in itertools.pairwise(tasks))
    scene.claim(
        len(tasks) == 4 and apart,
        "each task started after the one before had ended, although 3 workers were free: "
        "apply waited for every result",
        f"{len(tasks)} tasks, overlapping: {tasks}",
    )


def sync_nonblocking(scene: Scene) -> None:
    timeline = scene.timeline("Pool(2), apply_async, then ready() between other work")
    with shoal.Pool(2, trace=timeline) as pool:
        timeline.origin = time.monotonic()
        result = pool.apply_async(download, ("big file", 2 * scene.sleep))
        timeline.mark("apply_async returned")
        glances = 0
        while not result.ready():
            with timeline.region("other work"):
                time.sleep(scene.sleep / 4)  # stands for a slice of the main program's own work
            glances += 1
        timeline.mark("ready() is True")
        value = result.get(timeout=0)
        scene.say(f"main: glanced at ready() {glances} times; then get() gave {value!r}")
    scene.claim(
        value == "big file downloaded",
        "once ready() said True, get(timeout=0) handed the value over without waiting",
        f"get() gave {value!r}",
    )
    scene.claim(
        glances >= 2,
        f"the main program did {glances} slices of its own work while the download ran",
        f"the main program only glanced {glances} time(s): it was held up (a busy machine)",
        hard=False,
    )


def async_blocking(scene: Scene) -> None:
    timeline = scene.timeline("Pool(3), apply_async x3, then get()")
    with shoal.Pool(3, trace=timeline) as pool:
        timeline.origin = time.monotonic()
        results = [pool.apply_async(download, (f"file {i}", scene.sleep)) for i in range(3)]
        handed = time.monotonic()
        timeline.mark("apply_async x3 returned")
        values = []
        with timeline.region("blocked in get()"):
            for result in results:
                values.append(result.get())
        scene.say(f"main: get() gave {values}")
    first_end = min(e.end for e in timeline.tasks())
    scene.claim(
        values == [f"file {i} downloaded" for i in range(3)],
        "get() gave each task's value, in the order the tasks were submitted",
        f"get() gave {values}",
    )
    scene.claim(
        handed < first_end,
        "apply_async returned before any download ended (asynchronous); then get() blocked",
        "the main program was held up past the first download's end (a busy machine)",
        hard=False,
    )


def async_nonblocking(scene: Scene) -> None:
    timeline = scene.timeline("Pool(2), apply_async with a callback")
    dings: list[tuple[str, str, float]] = []
    main = threading.current_thread().name

    def ding(value: str) -> None:
        dings.append((value, threading.current_thread().name, time.monotonic()))
        timeline.mark("ding!", row="callback")
        scene.say(f"callback: ding! {value}")

    with shoal.Pool(2, trace=timeline) as pool:
        timeline.origin = time.monotonic()
        pool.apply_async(download, ("big file", 2 * scene.sleep), callback=ding)
        timeline.mark("apply_async returned")
        for piece in range(8):  # the main program's own work; it never asks about the download
            with timeline.region(f"work {piece}"):
                time.sleep(scene.sleep / 3)
        worked = time.monotonic()
        scene.say("main: my own work is done")
        pool.close()
        pool.join()
    scene.claim(
        len(dings) == 1 and dings[0][0] == "big file downloaded" and dings[0][1] != main,
        f"the callback got the value on the pool's callback thread ({dings[0][1] if dings else ''}"
        "), not on the main thread",
        f"the callback ran {len(dings)} time(s): {dings}",
    )
    scene.claim(
        bool(dings) and dings[0][2] < worked,
        "the ding came while the main program was busy with its own work",
        "the ding came after the main program's work (a busy machine)",
        hard=False,
    )


def daemon(scene: Scene) -> None:
    timeline = scene.timeline("Pool(2), each task starts a Pool(2) of its own")
    with shoal.Pool(2, trace=timeline) as pool:
        out = pool.starmap(nested_pool, [(3, scene.sleep / 2)] * 2, chunksize=1)
    names = {e.pid: e.worker for e in timeline.tasks()}
    for pid, _daemonic, _squares, events in out:
        outer = names.get(pid, str(pid))
        inner = (e.worker.replace("ShoalPool", "") for e in events)
        timeline.extend(
            replace(e, worker=f"{outer} > {name}") for e, name in zip(events, inner, strict=True)
        )
    daemonic = [d for _p, d, _s, _e in out]
    scene.say(f"shoal: worker daemon flags {daemonic}; inner pools returned {out[0][2]}")
    scene.claim(
        daemonic == [False, False] and all(s == [0, 1, 4] for _p, _d, s, _e in out),
        "shoal's workers are not daemons: each task ran a pool of its own to the end",
        f"daemon flags {daemonic}, results {[s for _p, _d, s, _e in out]}",
    )
    error = ""
    with multiprocessing.Pool(1) as mp_pool:
        try:
            mp_pool.apply(nested_pool, (1, 0.0))
        except Exception as exc:  # noqa: BLE001 - the point: show what multiprocessing raises
            error = f"{type(exc).__name__}: {exc}"
    scene.say(f"multiprocessing.Pool: the same task raised {error or 'nothing'}")
    scene.claim(
        "daemonic" in error,
        "multiprocessing.Pool's workers are daemons, and a daemon may not start processes",
        f"multiprocessing.Pool's worker raised {error or 'nothing'} (this Python allows it)",
        hard=False,
    )


def shared_memory(scene: Scene) -> None:
    timeline = scene.timeline(
        "Pool(4): 100 tasks append to a Manager list, then 10 to a plain list"
    )
    with Manager() as manager:
        shared: Any = manager.list([])
        plain: list[Any] = []
        with shoal.Pool(4, trace=timeline) as pool:
            timeline.origin = time.monotonic()
            results = [pool.apply_async(append_pair, (i, shared)) for i in range(100)]
            pids = [r.get() for r in results]
            lengths = pool.starmap(append_to_copy, [(i, plain) for i in range(10)])
        entries = list(shared)
    per_worker = sorted((pids.count(p) for p in set(pids)), reverse=True)
    scene.say(f"main: the Manager list has {len(entries)} entries, first {entries[:3]}")
    scene.say(f"main: appends per worker: {per_worker}")
    scene.say(f"main: the plain list has {len(plain)} entries (the workers' copies had {lengths})")
    scene.claim(
        sorted(entries) == [[i, i + 1] for i in range(100)],
        f"every task's append reached the Manager's list, once, from {len(per_worker)} workers",
        f"the list holds {len(entries)} entries, not the 100 the tasks appended",
    )
    scene.claim(
        plain == [],
        "a plain list stayed empty: each task appended to its own copy",
        f"the plain list has {len(plain)} entries",
    )


def ipc(scene: Scene) -> None:
    timeline = scene.timeline("Pool(2): a producer and a consumer share a queue")
    with Manager() as manager:
        queue: Any = manager.Queue()
        with shoal.Pool(2, trace=timeline) as pool:
            timeline.origin = time.monotonic()
            producer = pool.apply_async(produce, (queue, 3, scene.sleep / 3))
            consumer = pool.apply_async(consume, (queue, 60.0))
            sent, got = producer.get(), consumer.get()
    for message, when in sent:
        timeline.mark(f"put {message}", row="queue.put", at=when)
    for message, when in got:
        timeline.mark(f"got {message}", row="queue.get", at=when)
    scene.say(f"consumer: got {[m for m, _ in got]}")
    scene.claim(
        [m for m, _ in got] == [m for m, _ in sent]
        and all(g >= s for (_m, s), (_n, g) in zip(sent, got, strict=True)),
        "the consumer got every message, in order, each after it was put: the two tasks "
        "talked while both ran",
        f"sent {sent}, got {got}",
    )


class SceneInfo(NamedTuple):
    name: str
    title: str
    explanation: str
    code: str
    run: Callable[[Scene], None]


SCENES = [
    SceneInfo(
        "parallelism",
        "concurrency vs parallelism: threads and processes on CPU-bound work",
        "Concurrency: several tasks in progress at once, taking turns. Parallelism: tasks running\n"
        "at the same instant on different cores. Python threads are concurrent: the GIL lets one\n"
        "thread run Python code at a time, so CPU-bound work on 2 threads takes as long as doing\n"
        "it in turn, each task stretched to twice its CPU time. Processes each have their own\n"
        "interpreter and run in parallel: on 2 idle cores, in about half the time.",
        "pool.map(burn, [cpu] * 4) on shoal.ThreadPool(2), then on shoal.Pool(2)",
        parallelism,
    ),
    SceneInfo(
        "sync-blocking",
        "synchronous and blocking: apply",
        "apply hands a task to the pool and waits for its result: the result comes back from the\n"
        "call (synchronous) and the caller can do nothing else meanwhile (blocking). Xiao Ming\n"
        "watches the download's progress bar until it is full. Four apply calls run one after\n"
        "the other, although the pool has three workers.",
        "for i in range(4): pool.apply(download, (f'file {i}', t))",
        sync_blocking,
    ),
    SceneInfo(
        "sync-nonblocking",
        "synchronous and non-blocking: submit, then glance at ready()",
        "apply_async returns at once, so the caller can work; but nobody announces the end, the\n"
        "caller has to ask (synchronous): ready() is the glance at the progress bar between\n"
        "other work. Once it says True, get() hands the value over without waiting.",
        "r = pool.apply_async(download, ...); while not r.ready(): other_work(); r.get()",
        sync_nonblocking,
    ),
    SceneInfo(
        "async-blocking",
        "asynchronous and blocking: apply_async, then get()",
        "apply_async returns an AsyncResult at once and the tasks run side by side; the result\n"
        "will be announced (asynchronous). But the caller then sits in get() and does nothing\n"
        "until the value arrives (blocking): Xiao Ming waits for the download tool's ding.",
        "rs = [pool.apply_async(download, ...) for i in range(3)]; [r.get() for r in rs]",
        async_blocking,
    ),
    SceneInfo(
        "async-nonblocking",
        "asynchronous and non-blocking: a callback, the download that goes ding",
        "apply_async with a callback: the pool calls it with the value when the task is done\n"
        "(asynchronous), and the caller never waits or asks (non-blocking): Xiao Ming does other\n"
        "things until the download tool goes ding. The callback runs on the pool's callback\n"
        "thread, in the caller's process.",
        "pool.apply_async(download, ..., callback=ding); then the main program's own work",
        async_nonblocking,
    ),
    SceneInfo(
        "daemon",
        "daemon and non-daemon workers: a task that starts a pool of its own",
        "A daemon process is ended when its parent ends, and may not start processes itself.\n"
        "multiprocessing.Pool's workers are daemons, so a task that starts a pool fails there.\n"
        "shoal's workers are not daemons (shoal ends them itself when the pool or its owner\n"
        "ends): a task may run a pool of its own. The inner pools' tasks show as 'outer > inner'.",
        "Pool(2).starmap(nested_pool, ...) where nested_pool runs shoal.Pool(2) inside",
        daemon,
    ),
    SceneInfo(
        "shared-memory",
        "shared memory: a Manager list every worker appends to",
        "Workers are separate processes with their own memory: a plain list passed to a task is\n"
        "a copy, and appends to it are lost. A multiprocessing.Manager keeps one list in its own\n"
        "process and hands each task a proxy, so the main process sees every append.",
        "shared = Manager().list(); pool.apply_async(append_pair, (i, shared)) for 100 tasks",
        shared_memory,
    ),
    SceneInfo(
        "ipc",
        "inter-process communication: a queue between two tasks",
        "Processes talk through the operating system: pipes, sockets, queues built on them. A\n"
        "Manager's Queue can be handed to pool tasks: here one task puts messages while another\n"
        "takes them off, both running at once on two workers.",
        "q = Manager().Queue(); apply_async(produce, (q, ...)); apply_async(consume, (q, ...))",
        ipc,
    ),
]
