from __future__ import annotations

import nbray


def test_tasks_objects_actors(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def double(x: int) -> int:
        return 2 * x

    assert nbray.get([double.remote(i) for i in range(20)]) == [2 * i for i in range(20)]
    ref = nbray.put({"a": 1})
    assert nbray.get(ref) == {"a": 1}

    @nbray.remote
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def incr(self) -> int:
            self.n += 1
            return self.n

    c = Counter.remote()
    assert nbray.get([c.incr.remote() for _ in range(5)]) == [1, 2, 3, 4, 5]
