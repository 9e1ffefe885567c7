from __future__ import annotations

import shoal


def square(x: int) -> int:
    return x * x


def test_pool_map_and_executor_roundtrip(start_method: str) -> None:
    with shoal.Pool(2, context=start_method) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
    with shoal.ProcessPoolExecutor(2, mp_context=start_method) as ex:
        assert list(ex.map(square, range(5), chunksize=2)) == [0, 1, 4, 9, 16]
