"""shoal's benchmark suite: shoal against multiprocessing, concurrent.futures, joblib, mpire
and pebble, on the same tasks, start method and worker count. Run ``python -m bench --help``.

Modules, one job each:

* ``env``        limits BLAS/OpenMP threads (before numpy loads) and describes the machine
* ``tasks``      the functions the workers run (importable by every library's workers)
* ``calibrate``  sizes the CPU busy loop to this machine
* ``peers``      one adapter per library: its own best idiom for each kind of run
* ``workloads``  what each workload builds, runs and checks
* ``isolate``    runs one timed run in a forked child with a hard timeout
* ``runner``     interleaves the runs (round-robin, repeated) and takes medians; the sweeps
* ``report``     the tables (terminal and ``docs/benchmarks.md``)
* ``chart``      ``docs/benchmarks.png``
* ``saved``      the raw times as JSON (``docs/benchmarks.json``), to redraw without running
"""
