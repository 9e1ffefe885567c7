"""Functions, classes and exceptions of ``__main__`` in workers: ``python main_objects.py METHOD``.

Prints one line per check, ``CHECK <name> ok`` or ``CHECK <name> FAIL <why>``; the contract suite
runs this under each start method and asserts every line. Workers started by spawn or the
forkserver never ran this block, and the zygote that forks workers under fork was forked before
the ``Late`` names below existed, so those must travel by value and come back as the parent's own.
"""

import dataclasses
import multiprocessing
import os
import sys
import traceback

import shoal

print(f"IMPORTED {os.getpid()} {__name__}", flush=True)


@dataclasses.dataclass
class Point:
    x: int
    y: int


class MainError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


STATE = "unset"


def init_state(value):
    global STATE
    STATE = value


def read_state(_):
    return STATE


def make_point(i):
    return Point(i, -i)


def raise_main(i):
    raise MainError(i)


def check(name, fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the script reports any failure, SystemExit too
        detail = (
            "".join(traceback.format_exception_only(type(exc), exc)).strip().replace("\n", " | ")
        )
        print(f"CHECK {name} FAIL {detail}", flush=True)
    else:
        print(f"CHECK {name} ok", flush=True)


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def raises_own(call, cls, code):
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - SystemExit is what is checked here
        expect(type(exc) is cls, f"got {type(exc)!r} from {type(exc).__module__}, not {cls!r}")
        expect(exc.code == code, f"code {exc.code!r}")
        return
    raise AssertionError("nothing was raised")


if __name__ == "__main__":
    method = sys.argv[1]
    multiprocessing.set_start_method(method)  # shoal.map uses the default start method
    pool = shoal.Pool(2, context=method, initializer=init_state, initargs=("pool-init",))
    ex = shoal.ProcessPoolExecutor(
        2, mp_context=method, initializer=init_state, initargs=("executor-init",)
    )

    # Defined after the pools (and, under fork, their zygotes) exist.
    @dataclasses.dataclass
    class Late:
        v: int

    class LateError(Exception):
        def __init__(self, code):
            super().__init__(code)
            self.code = code

    def make_late(v):
        return Late(v)

    def raise_late(v):
        raise LateError(v)

    base = 40

    def closure(x):
        return x + base

    runners = {
        "pool": lambda fn, xs: pool.map(fn, xs, 1),
        "executor": lambda fn, xs: list(ex.map(fn, xs)),
        "map": lambda fn, xs: shoal.map(fn, xs, workers=2),
    }
    singles = {
        "pool": lambda fn, x: pool.apply(fn, (x,)),
        "executor": lambda fn, x: ex.submit(fn, x).result(60),
        "map": lambda fn, x: shoal.map(fn, [x], workers=2)[0],
    }
    for facade, run in runners.items():
        one = singles[facade]

        def dataclass_back(run=run):
            points = run(make_point, range(4))
            expect([type(p) is Point for p in points] == [True] * 4, f"types {points!r}")
            expect(points == [Point(i, -i) for i in range(4)], f"values {points!r}")

        def late_dataclass_back(run=run):
            got = run(make_late, range(3))
            expect(all(type(g) is Late for g in got), f"types {[type(g) for g in got]!r}")
            expect([g.v for g in got] == [0, 1, 2], f"values {got!r}")

        check(f"{facade}-dataclass", dataclass_back)
        check(f"{facade}-late-dataclass", late_dataclass_back)
        check(
            f"{facade}-main-exception",
            lambda one=one: raises_own(lambda: one(raise_main, 3), MainError, 3),
        )
        check(
            f"{facade}-late-exception",
            lambda one=one: raises_own(lambda: one(raise_late, 4), LateError, 4),
        )
        check(
            f"{facade}-lambda",
            lambda run=run: expect(run(lambda x: x * 3, range(4)) == [0, 3, 6, 9], "lambda"),
        )
        check(
            f"{facade}-closure",
            lambda run=run: expect(run(closure, range(3)) == [40, 41, 42], "closure"),
        )
    check(
        "pool-initializer-global",
        lambda: expect(pool.map(read_state, range(6), 1) == ["pool-init"] * 6, "pool state"),
    )
    check(
        "executor-initializer-global",
        lambda: expect(
            list(ex.map(read_state, range(6))) == ["executor-init"] * 6, "executor state"
        ),
    )
    pool.close()
    pool.join()
    ex.shutdown()
    print("DONE", flush=True)
