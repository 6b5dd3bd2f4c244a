"""runtime_env env_vars on every engine (fixture ``engine``: "local" and "ray"): per task,
per actor (all its calls), never leaking into other tasks. Directories and pip envs are
tested on the local engine in tests/util/test_runtime_env.py (Ray takes local directories
only at init, and installs pip envs itself)."""

from __future__ import annotations

import pytest

import nbray


@nbray.remote(max_retries=0)
def read_env(name: str) -> str | None:
    import os

    return os.environ.get(name)


@nbray.remote
class Reader:
    def read(self, name: str) -> str | None:
        import os

        return os.environ.get(name)


def test_task_env_vars_do_not_leak(engine: str) -> None:
    with_env = read_env.options(runtime_env={"env_vars": {"NBRAY_E_VAR": engine}})
    assert nbray.get(with_env.remote("NBRAY_E_VAR"), timeout=120) == engine
    assert nbray.get([read_env.remote("NBRAY_E_VAR") for _ in range(8)], timeout=60) == [None] * 8


def test_actor_env_vars_apply_to_every_call(engine: str) -> None:
    actor = Reader.options(runtime_env={"env_vars": {"NBRAY_E_ACTOR": "yes"}}).remote()
    assert (
        nbray.get([actor.read.remote("NBRAY_E_ACTOR") for _ in range(3)], timeout=120)
        == ["yes"] * 3
    )
    plain = Reader.remote()
    assert nbray.get(plain.read.remote("NBRAY_E_ACTOR"), timeout=120) is None
    nbray.kill(actor)
    nbray.kill(plain)


def test_unknown_field_is_refused(engine: str) -> None:
    with pytest.raises(ValueError, match="unknown runtime_env field"):
        read_env.options(runtime_env={"envvars": {"A": "1"}})
