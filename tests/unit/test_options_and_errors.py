"""Option validation and the rebuild of remote errors, without a cluster."""

from __future__ import annotations

import pickle

import pytest

from nbray._base.errors import RemoteError, TaskError, WorkerCrashedError
from nbray._base.options import ActorOptions, TaskOptions, make_options


def test_defaults_follow_ray() -> None:
    t = make_options(TaskOptions, None, {})
    assert (t.num_cpus, t.num_gpus, t.max_retries, t.num_returns) == (1, 0, 3, 1)
    a = make_options(ActorOptions, None, {})
    assert (a.max_restarts, a.max_task_retries) == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_cpu": 1}, "invalid option 'num_cpu'"),
        ({"num_cpus": -1}, "num_cpus must be a number"),
        ({"num_gpus": 1.5}, "whole number"),
        ({"max_retries": -2}, "max_retries must be"),
        ({"resources": {"CPU": 1}}, "use num_cpus"),
        ({"num_returns": "2"}, "num_returns"),
    ],
)
def test_bad_task_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make_options(TaskOptions, None, kwargs)


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
