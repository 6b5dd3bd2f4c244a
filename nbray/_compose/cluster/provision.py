"""`nbray up` / `nbray down`: a Ray cluster from a list of SSH hosts.

    up(spec):  every host, in parallel: connect ──▶ check Python, Ray, nbray ──▶ setup
               head: token into a 0600 file ──▶ ray start --head (token auth, dashboard on
               loopback, its own --temp-dir)
               workers, in parallel: token ──▶ ray start --address=head
               here: wait until every node joined ──▶ record the cluster (ray_engine/record)
    down(spec): every host: stop the processes under its nbray directory ──▶ remove it
               here: remove the record and the token

Everything nbray writes on a host lives in one directory (ClusterSpec.remote_dir); down
stops exactly the processes started from it (their command lines name it or they run in
it, and their children), never other Ray processes of that machine.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from nbray._engines.ray import record

from . import install
from .spec import ClusterSpec, HostSpec
from .ssh import StepError, run_script

__all__ = ["Progress", "StepError", "down", "up"]


Progress = Callable[[str, str, str], None]
JOIN_TIMEOUT = 90.0

_FACTS = r"""
PY=__PY__
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "no Python at $PY on this host (set python = '...' in the cluster file)"; exit 3
fi
"$PY" - <<'NBRAY_EOF'
import json, sys
facts = {"python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}
for mod in ("ray", "nbray"):
    try:
        facts[mod] = getattr(__import__(mod), "__version__", "unknown")
    except Exception as exc:
        facts[mod] = None
        facts[mod + "_error"] = f"{type(exc).__name__}: {exc}"
print("NBRAY_FACTS " + json.dumps(facts))
NBRAY_EOF
"""

_START = r"""
set -e
D="__DIR__"
PY=__PY__
mkdir -p "$D"
chmod 700 "$D"
umask 077
printf '%s' '__TOKEN__' > "$D/token"
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$D/token"
cd "$D"
if ! "$PY" -c 'import sys; from ray.scripts.scripts import main; sys.argv[0] = "ray"; main()' \
        start __ARGS__ --temp-dir="$D/r" --disable-usage-stats \
        </dev/null >"$D/start.log" 2>&1; then
    tail -n 30 "$D/start.log"; exit 4
fi
tail -n 2 "$D/start.log"
"""

_STOP = r"""
D="__DIR__"
PY=__PY__
[ -x "$PY" ] || PY=__BASEPY__
if [ ! -d "$D" ]; then
    echo "nothing of this cluster on this host"
else
"$PY" - "$D" <<'NBRAY_EOF' || echo "could not stop the processes"
import os, sys
import psutil
d, me = sys.argv[1], os.getpid()
found = set()
# started from d: named in the command line, or run in it (`ray start` runs in d, and some
# of its processes, e.g. Ray Client's server, name neither d nor a parent that is still there)
for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
    if p.pid != me and (
        d in " ".join(p.info["cmdline"] or []) or (p.info["cwd"] or "").startswith(d)
    ):
        found.add(p)
        try:
            found.update(p.children(recursive=True))
        except psutil.Error:
            pass
found = {p for p in found if p.pid != me}
for p in found:
    try:
        p.terminate()
    except psutil.Error:
        pass
_, alive = psutil.wait_procs(found, timeout=5)
for p in alive:
    try:
        p.kill()
    except psutil.Error:
        pass
psutil.wait_procs(alive, timeout=5)
print(f"stopped {len(found)} processes")
NBRAY_EOF
rm -rf "$D"
fi
"""


def _fill(template: str, **values: str) -> str:
    """``template`` with each ``__NAME__`` replaced (the scripts hold braces and $)."""
    for key, value in values.items():
        template = template.replace(f"__{key}__", value)
    return template


def _local_versions() -> tuple[str, str]:
    try:
        ray_version = metadata.version("ray")
    except metadata.PackageNotFoundError:
        raise StepError(
            "localhost",
            "check this machine",
            "Ray is not installed here: pip install 'nbray[ray]' (kernels drive the cluster "
            "from this machine, with the same Ray version as the cluster)",
        ) from None
    return f"{sys.version_info[0]}.{sys.version_info[1]}", ray_version


def _step(progress: Progress, host: HostSpec, step: str, fn: Callable[[], Any]) -> Any:
    progress(host.label, step, "...")
    t0 = time.monotonic()
    try:
        out = fn()
    except StepError:
        progress(host.label, step, "FAILED")
        raise
    progress(host.label, step, f"ok ({time.monotonic() - t0:.1f} s)")
    return out


def _check_host(
    spec: ClusterSpec,
    host: HostSpec,
    progress: Progress,
    wheel: Path | None = None,
    touched: list[HostSpec] | None = None,
) -> None:
    py_version, ray_version = _local_versions()

    def connect() -> None:
        res = run_script(spec, host, "connect", "true", timeout=spec.connect_timeout + 20)
        if res.returncode:
            raise StepError(host.label, "connect", "the shell on the host failed", res.output)

    def check() -> None:
        step = "check Python and Ray"
        res = run_script(spec, host, step, _fill(_FACTS, PY=shlex.quote(host.python)))
        facts_line = next(
            (ln for ln in res.output.splitlines() if ln.startswith("NBRAY_FACTS ")), ""
        )
        if res.returncode or not facts_line:
            raise StepError(host.label, step, f"cannot run {host.python}", res.output)
        facts = json.loads(facts_line.split(" ", 1)[1])
        remote_py = ".".join(facts["python"].split(".")[:2])
        if remote_py != py_version:
            raise StepError(
                host.label,
                step,
                f"{host.python} is Python {facts['python']}, but this machine runs Python "
                f"{py_version}: Ray needs the same Python version on every node and driver",
            )
        if host.install:
            return  # nbray[ray] goes into a venv made from this Python
        if facts["ray"] is None:
            raise StepError(
                host.label,
                step,
                f"Ray is not installed for {host.python} ({facts.get('ray_error')}): install "
                f"it there with: {host.python} -m pip install 'nbray[ray]' 'ray=={ray_version}'",
            )
        if facts["ray"] != ray_version:
            raise StepError(
                host.label,
                step,
                f"Ray version mismatch: {host.python} has Ray {facts['ray']}, this machine "
                f"has Ray {ray_version}; install the same version on both",
            )
        if facts["nbray"] is None:
            raise StepError(
                host.label,
                step,
                f"nbray is not installed for {host.python} ({facts.get('nbray_error')}): "
                f"install it there with: {host.python} -m pip install 'nbray[ray]'",
            )

    def setup() -> None:
        script = "set -e\n" + "\n".join(spec.setup_commands) + "\n"
        res = run_script(spec, host, "setup commands", script, timeout=600)
        if res.returncode:
            raise StepError(
                host.label, "setup commands", f"exited with {res.returncode}", res.output
            )

    _step(progress, host, "connect", connect)
    _step(progress, host, "check Python and Ray", check)
    if spec.setup_commands:
        _step(progress, host, "setup commands", setup)
    if host.install and wheel is not None:
        if touched is not None:
            touched.append(host)
        _step(progress, host, "install nbray[ray]", lambda: install.install_host(spec, host, wheel))


def _ray_args(spec: ClusterSpec, host: HostSpec, head: bool) -> list[str]:
    args = [f"--node-ip-address={host.node_ip}"]
    if head:
        args += [
            "--head",
            f"--port={spec.ray_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={spec.dashboard_port}",
        ]
    else:
        args.append(f"--address={spec.address}")
    if host.num_cpus is not None:
        args.append(f"--num-cpus={host.num_cpus}")
    if host.num_gpus is not None:
        args.append(f"--num-gpus={host.num_gpus}")
    if host.resources:
        args.append(f"--resources={json.dumps(host.resources)}")
    if spec.object_store_memory:
        args.append(f"--object-store-memory={spec.object_store_memory}")
    return args


def _start(spec: ClusterSpec, host: HostSpec, token: str, head: bool, progress: Progress) -> None:
    step = "start Ray head" if head else "start Ray worker"

    def start() -> None:
        script = _fill(
            _START,
            DIR=spec.remote_dir(host),
            PY=shlex.quote(spec.ray_python(host)),
            TOKEN=token,
            ARGS=" ".join(shlex.quote(a) for a in _ray_args(spec, host, head)),
        )
        res = run_script(spec, host, step, script, timeout=180)
        if res.returncode and "timed out during startup" in res.output:
            # Ray gives a node's raylet a fixed 30 s to register: on a loaded host, clean up
            # and try once more before giving up
            progress(host.label, step, "Ray's node start-up timed out; trying once more")
            _stop_host(spec, host)
            res = run_script(spec, host, step, script, timeout=180)
        if res.returncode:
            raise StepError(host.label, step, "ray start failed", res.output)

    _step(progress, host, step, start)


def _stop_host(spec: ClusterSpec, host: HostSpec) -> None:
    script = _fill(
        _STOP,
        DIR=spec.remote_dir(host),
        PY=shlex.quote(spec.ray_python(host)),
        BASEPY=shlex.quote(host.python),
    )
    if host.install:
        script += _fill(install.REMOVE_VENV, VENV=spec.venv_dir(host), MARK=install.MARK)
    res = run_script(spec, host, "stop Ray", script, timeout=60)
    if res.returncode:
        raise StepError(host.label, "stop Ray", "stopping failed", res.output)


def _stop(spec: ClusterSpec, host: HostSpec, progress: Progress) -> None:
    _step(progress, host, "stop Ray", lambda: _stop_host(spec, host))


def _parallel(fn: Callable[[HostSpec], None], hosts: tuple[HostSpec, ...]) -> list[StepError]:
    """Run ``fn`` on every host at once; the StepErrors raised, in host order."""
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        futures = [pool.submit(fn, h) for h in hosts]
    errors = []
    for fut in futures:
        exc = fut.exception()
        if isinstance(exc, StepError):
            errors.append(exc)
        elif exc is not None:
            raise exc
    return errors


def _wait_for_nodes(spec: ClusterSpec, token_file: str, progress: Progress) -> list[str]:
    """Connect from this machine as kernels will, and wait until every node is alive."""
    from nbray._engines.ray.connect import connect

    label = spec.head.label
    progress(label, "wait for every node", "...")
    os.environ["NBRAY_RAY_TOKEN_FILE"] = token_file
    try:
        engine, _ = connect(
            spec.address, namespace=None, num_cpus=None, num_gpus=None, resources=None
        )
    except Exception as exc:
        raise StepError(label, "connect from this machine", str(exc)) from None
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT
        expected = {h.node_ip for h in spec.hosts}
        while True:
            nodes = engine.cluster_info()["nodes"]
            alive = {n["NodeManagerAddress"] for n in nodes if n["Alive"]}
            if expected <= alive:
                progress(label, "wait for every node", f"ok ({len(alive)} nodes)")
                return sorted(alive)
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(expected - alive))
                raise StepError(
                    label,
                    "wait for every node",
                    f"nodes {missing} did not join in {JOIN_TIMEOUT:.0f} s (see "
                    f"{spec.remote_dir(spec.head)}/r/session_latest/logs on the head)",
                )
            time.sleep(0.5)
    finally:
        engine.shutdown()


def up(spec: ClusterSpec, progress: Progress) -> dict[str, Any]:
    """Provision the cluster and record it; raises StepError (having stopped whatever it
    started) when a step fails on a host."""
    _local_versions()
    current = record.read()
    if current is not None and current.get("name") == spec.name:
        raise StepError(
            "localhost",
            "check this machine",
            f"cluster {spec.name!r} is already up (head {current['address']}): run "
            f"`nbray down {spec.path}` first",
        )
    started: list[HostSpec] = []  # hosts where up wrote something (down undoes it)
    with install.temp_wheel_dir() as wheel_dir:
        wheel = None
        if any(h.install for h in spec.hosts):
            step = "build the nbray wheel"
            progress("localhost", step, "...")
            wheel = install.build_wheel(spec, wheel_dir)
            progress("localhost", step, f"ok ({wheel.name})")
        errors = _parallel(lambda h: _check_host(spec, h, progress, wheel, started), spec.hosts)
    if errors:
        _parallel(lambda h: _stop(spec, h, progress), tuple(started))
        raise errors[0]
    token = record.new_token()
    token_file = record.write_token(record.user_token_file(spec.name), token)
    try:
        _start(spec, spec.head, token, True, progress)
        if spec.head not in started:
            started.append(spec.head)

        def start_worker(h: HostSpec) -> None:
            _start(spec, h, token, False, progress)
            if h not in started:
                started.append(h)

        errors = _parallel(start_worker, spec.workers)
        if errors:
            raise errors[0]
        nodes = _wait_for_nodes(spec, str(token_file), progress)
    except BaseException:
        _parallel(lambda h: _stop(spec, h, progress), tuple(started))
        token_file.unlink(missing_ok=True)
        raise
    data = {
        "name": spec.name,
        "address": spec.address,
        "token_file": str(token_file),
        "cluster_file": str(spec.path),
        "nodes": nodes,
        "dashboard": f"http://127.0.0.1:{spec.dashboard_port} on {spec.head.host}",
        "on_this_machine": any(_is_local(h.node_ip) for h in spec.hosts),
    }
    record.write(data)
    return data


def _is_local(ip: str) -> bool:
    """Whether ``ip`` is an address of this machine (a Ray node here can use it)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((ip, 0))
        return True
    except OSError:
        return False


def down(spec: ClusterSpec, progress: Progress) -> list[StepError]:
    """Stop every node and remove what nbray wrote; returns the hosts that failed."""
    errors = _parallel(lambda h: _stop(spec, h, progress), spec.workers)
    errors += _parallel(lambda h: _stop(spec, h, progress), (spec.head,))
    record.clear(spec.name)
    record.user_token_file(spec.name).unlink(missing_ok=True)
    return errors
