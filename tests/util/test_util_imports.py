"""Ray's paths work through ``import nbray as ray``; ``import nbray`` does not load them."""

from __future__ import annotations

from nbray_testing import run_python


def test_rays_paths_resolve_and_load_lazily() -> None:
    result = run_python(
        """
        import sys
        import nbray as ray
        assert "nbray.util" not in sys.modules and "nbray.experimental" not in sys.modules
        from nbray.util import ActorPool, inspect_serializability
        from nbray.util.queue import Queue, Empty, Full
        from nbray.util.multiprocessing import Pool, TimeoutError, JoinableQueue
        from nbray.util.joblib import NbrayBackend, register_ray, register_nbray
        from nbray.util.joblib.ray_backend import RayBackend
        from nbray.util.check_serialize import FailureTuple
        from nbray.experimental.tqdm_ray import tqdm
        import multiprocessing, queue
        assert ray.util.ActorPool is ActorPool
        assert ray.util.queue.Queue is Queue and issubclass(Empty, queue.Empty)
        assert issubclass(Full, queue.Full)
        assert ray.util.multiprocessing.Pool is Pool
        assert RayBackend is NbrayBackend
        assert TimeoutError is multiprocessing.TimeoutError
        assert ray.util.inspect_serializability is inspect_serializability
        assert ray.util.tqdm is tqdm is ray.experimental.tqdm_ray.tqdm
        assert set(ray.util.__all__) <= set(dir(ray.util))
        for name in ray.util.__all__:
            getattr(ray.util, name)
        print("ok")
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
