"""Option validation and the rebuild of remote errors, without a cluster."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

import nbray
from nbray._base.errors import RemoteError, TaskError, WorkerCrashedError
from nbray._base.options import ActorOptions, TaskOptions, make_options


def test_defaults_follow_ray() -> None:
    t = make_options(TaskOptions, None, {})
    assert (t.num_cpus, t.num_gpus, t.max_retries, t.num_returns) == (1, 0, 3, 1)
    a = make_options(ActorOptions, None, {})
    assert (a.max_restarts, a.max_task_retries) == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_cpu": 1}, ValueError, "invalid option 'num_cpu'"),
        ({"num_cpus": -1}, ValueError, "num_cpus cannot be negative"),
        ({"num_cpus": "1"}, TypeError, r"'num_cpus' must be \(<class 'int'>, <class 'float'>"),
        ({"num_cpus": 0.00001}, ValueError, "cannot go beyond 0.0001"),
        ({"num_gpus": 1.5}, ValueError, "whole number"),
        ({"max_retries": -2}, ValueError, "'max_retries' only accepts"),
        (
            {"max_retries": 1.5},
            TypeError,
            r"'max_retries' must be \(<class 'int'>, <class 'NoneType'>\), but received type "
            r"<class 'float'>: 1.5",
        ),
        ({"max_calls": -1}, ValueError, "'max_calls' only accepts"),
        ({"resources": {"CPU": 1}}, ValueError, "use num_cpus"),
        ({"resources": {"x": "1"}}, TypeError, "resource 'x' must be a number"),
        ({"resources": [1]}, TypeError, r"'resources' must be \(<class 'dict'>"),
        ({"num_returns": "2"}, ValueError, "num_returns"),
        ({"num_returns": -1}, ValueError, "num_returns"),
        ({"num_returns": 1.0}, TypeError, "num_returns"),
        ({"num_returns": "stream"}, ValueError, "only accepts"),
        ({"retry_exceptions": [int]}, TypeError, "retry_exceptions"),
        ({"_metadata": 3.14}, TypeError, r"'_metadata' must be \(<class 'dict'>"),
        ({"name": 3}, TypeError, r"'name' must be \(<class 'str'>"),
    ],
)
def test_bad_task_options(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_options(TaskOptions, None, kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_restarts": 0.5}, TypeError, r"'max_restarts' must be \(<class 'int'>"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency"),
        ({"lifetime": "forever"}, ValueError, "lifetime"),
        ({"get_if_exists": 1}, TypeError, r"'get_if_exists' must be \(<class 'bool'>"),
        ({"concurrency_groups": {"io": 0}}, ValueError, "size >= 1"),
        ({"concurrency_groups": {"": 1}}, TypeError, "non-empty str"),
        ({"concurrency_groups": 3}, TypeError, r"'concurrency_groups' must be \(<class 'dict'>"),
    ],
)
def test_bad_actor_options(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_options(ActorOptions, None, kwargs)


def test_ray_library_metadata_is_accepted_and_kept_for_ray() -> None:
    t = make_options(TaskOptions, None, {"_metadata": {"workflows.io/options": {}}})
    assert t.ray_options == {"_metadata": {"workflows.io/options": {}}}
    assert make_options(ActorOptions, None, {"_metadata": {"data": 1}}).ray_options


def test_none_is_the_default_and_max_calls_only_in_the_decorator() -> None:
    t = make_options(TaskOptions, None, {"num_cpus": None, "max_retries": None, "max_calls": 2})
    assert (t.num_cpus, t.max_retries, t.max_calls) == (1, 3, 2)
    with pytest.raises(ValueError, match="max_calls"):
        make_options(TaskOptions, t, {"max_calls": 3})
    a = make_options(ActorOptions, None, {"concurrency_groups": {"io": 2}, "num_cpus": None})
    assert a.concurrency_groups == {"io": 2} and a.num_cpus == 0


def test_the_decorator_is_used_bare_or_with_options_as_in_ray() -> None:
    with pytest.raises(TypeError, match="no parentheses"):

        @nbray.remote()
        def f() -> None: ...

    with pytest.raises(ValueError, match="invalid option 'invalid_kwarg'"):
        nbray.remote(num_cpus=0, invalid_kwarg=0)(lambda: None)


def test_no_cluster_starts_on_first_use_when_ray_s_switch_says_so() -> None:
    code = "import nbray\nnbray.put(1)"
    env = {**os.environ, "RAY_ENABLE_AUTO_CONNECT": "0"}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    assert "RAY_ENABLE_AUTO_CONNECT=0" in run.stderr and "call nbray.init() first" in run.stderr


def test_resource_request() -> None:
    t = make_options(TaskOptions, None, {"num_cpus": 2, "resources": {"x": 1}})
    assert t.resource_request() == {"CPU": 2.0, "x": 1.0}
    assert make_options(TaskOptions, None, {"num_cpus": 0}).resource_request() == {}


class CustomError(Exception):
    pass


def _raise(exc: BaseException) -> RemoteError:
    try:
        raise exc
    except BaseException as caught:
        return RemoteError.from_exception(caught, "f", "00ab")


def test_task_error_is_an_instance_of_the_cause() -> None:
    err = _raise(CustomError("boom")).to_exception()
    assert isinstance(err, TaskError) and isinstance(err, CustomError)
    assert "boom" in str(err) and "CustomError" in str(err)
    assert "raise exc" in err.remote_traceback
    assert err.__cause__ is not None and "Remote traceback" in str(err.__cause__)


def test_task_error_survives_pickling() -> None:
    err = _raise(KeyError("k")).to_exception()
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, KeyError) and isinstance(again, TaskError)


def test_unpicklable_exception_falls_back_to_text() -> None:
    class Local(Exception):  # not importable by name elsewhere
        def __reduce__(self) -> tuple[object, ...]:
            raise TypeError("nope")

    err = _raise(Local("x")).to_exception()
    assert isinstance(err, TaskError)
    assert "Local" in str(err)


def test_worker_crash_keeps_exit_code() -> None:
    err = RemoteError(kind="worker_crashed", message="died", exit_code=-9).to_exception()
    assert isinstance(err, WorkerCrashedError) and err.exit_code == -9


def test_nested_task_error_keeps_the_original_class() -> None:
    # the worker of the outer task re-raises the rebuilt inner error; the driver gets an
    # error of the original class, whose traceback holds both tasks' frames
    inner = _raise(ZeroDivisionError("division by zero")).to_exception()
    try:
        raise inner
    except TaskError as caught:
        outer = RemoteError.from_exception(caught, "outer", "00cd")
    err = pickle.loads(pickle.dumps(outer)).to_exception()
    assert isinstance(err, ZeroDivisionError) and isinstance(err, TaskError)
    assert isinstance(err.cause, ZeroDivisionError)
    assert err.function_name == "outer"
    assert "Remote traceback" in err.remote_traceback  # the inner one, above the outer's
    assert "raise exc" in err.remote_traceback and "raise inner" in err.remote_traceback


def test_argument_check_counts_then_binds() -> None:
    from nbray._model.signature import method_check, signature_check

    def f(a: int, b: int = 2) -> int:
        return a + b

    check = signature_check(f, "f")
    assert check is not None
    check((1,), {})
    check((1, 2), {})
    check((), {"a": 1})
    with pytest.raises(TypeError, match=r"f\(\): missing a required argument: 'a'"):
        check((), {})
    with pytest.raises(TypeError, match="too many positional arguments"):
        check((1, 2, 3), {})
    for _ in range(2):  # a shape that bound once is remembered; a bad one never is
        check((1,), {"b": 3})
        with pytest.raises(TypeError, match="multiple values for argument 'a'"):
            check((1,), {"a": 3})
        with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
            check((1,), {"z": 3})

    def kw_only(a: int, *, c: int = 0) -> int:
        return a + c

    check = signature_check(kw_only, "kw_only")
    assert check is not None
    for _ in range(2):
        check((1,), {"c": 2})
        with pytest.raises(TypeError, match="too many positional arguments"):
            check((1, 2), {})

    class C:
        def m(self, x: int) -> int:
            return x

        @staticmethod
        def s(x: int) -> int:
            return x

        @classmethod
        def c(cls, x: int) -> int:
            return x

    for name in ("m", "s", "c"):
        mc = method_check(C, name)
        assert mc is not None
        mc((1,), {})
        with pytest.raises(TypeError):
            mc((), {})
    init = method_check(C, "__init__")  # no constructor: no arguments, as Ray
    assert init is not None
    with pytest.raises(TypeError):
        init((1,), {})
