"""A script without ``if __name__ == "__main__":``: ``python unguarded.py METHOD``.

Workers must never run it again (loky's rule): under spawn the stdlib's workers re-import the main
script, which would start pools from inside workers. It prints ``SCRIPT-RAN`` each time it runs.
"""

import os
import sys

import shoal

print(f"SCRIPT-RAN {os.getpid()}", flush=True)


def square(x):
    return x * x


with shoal.Pool(2, context=sys.argv[1]) as pool:
    print("POOL", pool.map(square, range(5)), flush=True)
with shoal.ProcessPoolExecutor(2, mp_context=sys.argv[1]) as ex:
    print("EXECUTOR", list(ex.map(square, range(5))), flush=True)
