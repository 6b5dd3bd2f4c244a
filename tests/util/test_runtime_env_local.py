"""runtime_env on the local engine, in real clusters: env_vars, working_dir (+ excludes),
py_modules, pip (a real virtualenv from the machine's package index), errors, cleanup.

Each test gets its own cache directory (NBRAY_RUNTIME_ENV_DIR), except the pip tests,
which share one per module so the virtualenv is built once.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from nbray_testing import wait_until

import nbray
from nbray._base import errors

Factory = Callable[..., nbray.ClusterContext]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "renv-cache"
    monkeypatch.setenv("NBRAY_RUNTIME_ENV_DIR", str(path))
    return path


@nbray.remote(max_retries=0)
def read_env(name: str) -> str | None:
    import os

    return os.environ.get(name)


@nbray.remote(max_retries=0)
def where() -> dict[str, object]:
    import os
    import sys

    return {
        "cwd": os.getcwd(),
        "path": list(sys.path),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "pid": os.getpid(),
    }


@nbray.remote(max_retries=0)
def can_import(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@nbray.remote
class EnvActor:
    def read(self, name: str) -> str | None:
        import os

        return os.environ.get(name)


# --- env_vars ----------------------------------------------------------------------------


def test_env_vars_per_task_do_not_leak_into_the_next_task(
    cluster: nbray.ClusterContext, cache: Path
) -> None:
    with_env = read_env.options(runtime_env={"env_vars": {"NBRAY_T_VAR": "set"}})
    assert nbray.get(with_env.remote("NBRAY_T_VAR"), timeout=60) == "set"
    # many plain tasks after it, on every worker of the pool: none sees the variable
    assert nbray.get([read_env.remote("NBRAY_T_VAR") for _ in range(20)], timeout=60) == [None] * 20
    assert nbray.get(with_env.remote("NBRAY_T_VAR"), timeout=60) == "set"
    other = read_env.options(runtime_env={"env_vars": {"NBRAY_T_VAR": "other"}})
    assert nbray.get(other.remote("NBRAY_T_VAR"), timeout=60) == "other"


def test_actor_env_applies_to_all_its_calls(cluster: nbray.ClusterContext, cache: Path) -> None:
    actor = EnvActor.options(runtime_env={"env_vars": {"NBRAY_A_VAR": "actor"}}).remote()
    assert (
        nbray.get([actor.read.remote("NBRAY_A_VAR") for _ in range(3)], timeout=60) == ["actor"] * 3
    )
    assert nbray.get(EnvActor.remote().read.remote("NBRAY_A_VAR"), timeout=60) is None


def test_job_env_from_init_merges_with_the_tasks(cluster_factory: Factory, cache: Path) -> None:
    cluster_factory(num_cpus=1, runtime_env={"env_vars": {"JOB_A": "job", "BOTH": "job"}})
    assert nbray.get(read_env.remote("JOB_A"), timeout=60) == "job"
    task = read_env.options(runtime_env={"env_vars": {"BOTH": "task"}})
    assert nbray.get([task.remote("JOB_A"), task.remote("BOTH")], timeout=60) == ["job", "task"]


@nbray.remote(max_retries=0)
def nested_read(name: str) -> str | None:
    import nbray

    @nbray.remote
    def inner(n: str) -> str | None:
        import os

        return os.environ.get(n)

    return nbray.get(inner.remote(name))


def test_nested_tasks_inherit_the_parents_env(cluster: nbray.ClusterContext, cache: Path) -> None:
    parent = nested_read.options(runtime_env={"env_vars": {"NBRAY_N_VAR": "inherited"}})
    assert nbray.get(parent.remote("NBRAY_N_VAR"), timeout=60) == "inherited"


# --- working_dir and py_modules ----------------------------------------------------------


def _project(root: Path) -> Path:
    proj = root / "project"
    (proj / "data").mkdir(parents=True)
    (proj / "helper_wd.py").write_text("VALUE = 'from working_dir'\n")
    (proj / "data" / "input.txt").write_text("hello\n")
    (proj / "secret.key").write_text("not shipped\n")
    (proj / "build").mkdir()
    (proj / "build" / "big.bin").write_bytes(b"x" * 1000)
    return proj


@nbray.remote(max_retries=0)
def use_working_dir() -> dict[str, object]:
    import os

    import helper_wd

    return {
        "value": helper_wd.VALUE,
        "data": open("data/input.txt").read(),
        "secret": os.path.exists("secret.key"),
        "build": os.path.exists("build"),
        "cwd": os.getcwd(),
    }


def test_working_dir_is_packaged_once_with_excludes(
    cluster: nbray.ClusterContext, cache: Path, tmp_path: Path
) -> None:
    proj = _project(tmp_path)
    env = {"working_dir": str(proj), "excludes": ["*.key", "build/"]}
    out = nbray.get(use_working_dir.options(runtime_env=env).remote(), timeout=60)
    assert out["value"] == "from working_dir"
    assert out["data"] == "hello\n"
    assert out["secret"] is False and out["build"] is False
    packaged = Path(str(out["cwd"]))
    assert packaged.parent == cache / "working_dir" and packaged != proj
    # the same content again: the same package, nothing copied twice
    again = nbray.get(use_working_dir.options(runtime_env=dict(env)).remote(), timeout=60)
    assert again["cwd"] == out["cwd"]
    assert len(list((cache / "working_dir").iterdir())) == 1
    # a task without the env neither runs there nor imports the module
    plain = nbray.get(where.remote(), timeout=60)
    assert plain["cwd"] != out["cwd"]
    assert nbray.get(can_import.remote("helper_wd"), timeout=60) is False


def test_py_modules_are_importable_only_in_their_tasks(
    cluster: nbray.ClusterContext, cache: Path, tmp_path: Path
) -> None:
    pkg = tmp_path / "mods" / "nbray_t_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("NAME = 'pkg'\n")
    single = tmp_path / "mods" / "nbray_t_single.py"
    single.write_text("NAME = 'single'\n")

    @nbray.remote(max_retries=0, runtime_env={"py_modules": [str(pkg), str(single)]})
    def use_modules() -> list[str]:
        import nbray_t_pkg
        import nbray_t_single

        return [nbray_t_pkg.NAME, nbray_t_single.NAME]

    assert nbray.get(use_modules.remote(), timeout=60) == ["pkg", "single"]
    assert nbray.get(can_import.remote("nbray_t_pkg"), timeout=60) is False
    # a local file:// URI (Ray's tests give them, with a space in the path here) is a path
    spaced = tmp_path / "a b" / "nbray_t_spaced"
    spaced.mkdir(parents=True)
    (spaced / "__init__.py").write_text("NAME = 'spaced'\n")
    env = {"py_modules": [f"file://localhost/{spaced}"]}
    assert nbray.get(can_import.options(runtime_env=env).remote("nbray_t_spaced"), timeout=60)


def test_missing_working_dir_fails_at_submit(cluster: nbray.ClusterContext, cache: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        where.options(runtime_env={"working_dir": "/nonexistent/nbray-dir"}).remote()
    with pytest.raises(ValueError, match="local directories"):
        where.options(runtime_env={"working_dir": "s3://bucket/pkg.zip"}).remote()


# --- validation (no cluster needed) --------------------------------------------------


@pytest.mark.parametrize(
    ("env", "error", "match"),
    [
        ({"no_such_field": 1}, ValueError, "unknown runtime_env field 'no_such_field'"),
        ({"conda": "env"}, ValueError, "not supported by nbray's local engine"),
        ({"env_vars": {"A": 1}}, TypeError, "dict of str -> str"),
        ({"pip": ["a"], "uv": ["b"]}, ValueError, "cannot both be specified"),
        ({"pip": {"packages": ["a"], "bogus": 1}}, ValueError, "unknown key"),
        ({"config": {"setup_timeout_seconds": 0}}, ValueError, "setup_timeout_seconds"),
        ("env_vars=1", TypeError, "must be a dict"),
    ],
)
def test_bad_runtime_env_is_refused_when_given(env: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        read_env.options(runtime_env=env)
    with pytest.raises(error, match=match):
        nbray.remote(runtime_env=env)(lambda: None)


# --- pip -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pip-cache")


@pytest.mark.timeout(300)
def test_pip_env_builds_a_venv_once_and_reuses_it(
    cluster_factory: Factory, pip_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBRAY_RUNTIME_ENV_DIR", str(pip_cache))
    assert importlib.util.find_spec("termcolor") is None, "the kernel must not have termcolor"
    cluster_factory(num_cpus=2)
    env = {"pip": ["termcolor"]}

    @nbray.remote(max_retries=0, runtime_env=env)
    def colored() -> dict[str, str]:
        import sys

        import numpy  # a kernel package, visible in the env
        import termcolor

        return {
            "file": termcolor.__file__,
            "executable": sys.executable,
            "prefix": sys.prefix,
            "numpy": numpy.__name__,
        }

    first = nbray.get(colored.remote(), timeout=240)
    venvs = pip_cache / "venvs"
    (venv,) = [p for p in venvs.iterdir() if p.is_dir()]
    assert first["prefix"] == str(venv)
    assert first["executable"].startswith(str(venv))
    assert first["file"].startswith(str(venv))
    assert first["numpy"] == "numpy"
    marker = venv / ".nbray-ready"
    built = marker.stat().st_mtime_ns
    # a second function with the same requirements: the same venv, not rebuilt
    second = nbray.get(where.options(runtime_env={"pip": ["termcolor"]}).remote(), timeout=120)
    assert second["prefix"] == str(venv)
    assert marker.stat().st_mtime_ns == built
    # the kernel's environment is untouched, and plain tasks cannot import termcolor
    assert importlib.util.find_spec("termcolor") is None
    assert nbray.get(can_import.remote("termcolor"), timeout=60) is False
    assert nbray.get(where.remote(), timeout=60)["prefix"] == sys.prefix
    assert not list(venvs.glob("*.lock")), "a venv lock was left behind"


@pytest.mark.timeout(300)
def test_failed_pip_install_fails_the_task_with_pips_message(
    cluster_factory: Factory, pip_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBRAY_RUNTIME_ENV_DIR", str(pip_cache))
    cluster_factory(num_cpus=1)
    env = {"pip": ["nbray-no-such-package-for-tests==9.9.9"]}
    ref = where.options(runtime_env=env).remote()
    with pytest.raises(errors.RuntimeEnvSetupError) as info:
        nbray.get(ref, timeout=240)
    message = str(info.value)
    assert "nbray-no-such-package-for-tests" in message
    assert "No matching distribution" in message or "Could not find a version" in message
    # the actor of such an env dies with the same message; other work is unaffected
    actor = EnvActor.options(runtime_env=env).remote()
    with pytest.raises(errors.ActorDiedError, match="runtime_env setup failed"):
        nbray.get(actor.read.remote("X"), timeout=240)
    assert nbray.get(read_env.remote("NBRAY_T_VAR"), timeout=60) is None
    left = list((pip_cache / "venvs").iterdir())
    assert not [p for p in left if p.name.endswith(".lock")], "a venv lock was left behind"
    # the half-built venv was removed: only complete ones stay
    assert all((p / ".nbray-ready").exists() for p in left if p.is_dir())


@pytest.mark.timeout(300)
def test_job_pip_env_is_installed_eagerly_at_init(cluster_factory: Factory, cache: Path) -> None:
    cluster_factory(num_cpus=1, runtime_env={"pip": ["termcolor"]})
    # no task submitted: init alone starts building the job's venv (config.eager_install)
    ready = wait_until(lambda: list(cache.glob("venvs/*/.nbray-ready")), timeout=240)
    venv = ready[0].parent
    assert nbray.get(where.remote(), timeout=120)["prefix"] == str(venv)


def test_runtime_env_classes_check_their_fields(cluster: nbray.ClusterContext, cache: Path) -> None:
    import nbray as ray

    env = ray.runtime_env.RuntimeEnv(
        env_vars={"NBRAY_C_VAR": "cls"},
        config=ray.runtime_env.RuntimeEnvConfig(setup_timeout_seconds=30),
    )
    assert env.env_vars() == {"NBRAY_C_VAR": "cls"}
    assert nbray.get(read_env.options(runtime_env=env).remote("NBRAY_C_VAR"), timeout=60) == "cls"
    with pytest.raises(TypeError, match="env_vars"):
        ray.runtime_env.RuntimeEnv(env_vars={"A": 1})
    with pytest.raises(ValueError, match="setup_timeout_seconds"):
        ray.runtime_env.RuntimeEnvConfig(setup_timeout_seconds=0)
