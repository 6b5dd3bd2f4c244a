"""Running shell scripts on cluster hosts with the system ``ssh`` client.

    provision.py ──run_script(host, step, script)──▶ ssh -o BatchMode=yes ... host bash -s
        (the script on stdin: nothing secret in any process's argv) ──▶ Result / StepError

Host keys are checked against known_hosts (``StrictHostKeyChecking=yes``); only
``trust_on_first_use`` accepts the key of a host not seen before (``accept-new``), and a
changed key is always refused.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .spec import ClusterSpec, HostSpec

__all__ = ["Result", "StepError", "copy_file", "run_script", "ssh_command"]


class StepError(RuntimeError):
    """Raised when a step of `nbray up` / `nbray down` fails on a host; names both."""

    def __init__(self, host: str, step: str, message: str, output: str = "") -> None:
        self.host = host
        self.step = step
        self.output = output.strip()
        text = f"host {host}, step '{step}': {message}"
        if self.output:
            text += "\n  remote output:\n" + "\n".join(
                "    " + line for line in self.output.splitlines()[-20:]
            )
        super().__init__(text)


@dataclass
class Result:
    returncode: int
    output: str


def ssh_command(spec: ClusterSpec, host: HostSpec) -> list[str]:
    """The ``ssh`` argv (without the remote command) for ``host``."""
    argv = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        f"StrictHostKeyChecking={'accept-new' if spec.trust_on_first_use else 'yes'}",
        "-o",
        f"ConnectTimeout={int(spec.connect_timeout)}",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ServerAliveInterval=5",
        "-p",
        str(host.port),
    ]
    if spec.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={spec.known_hosts}"]
    if spec.identity_file:
        argv += ["-i", spec.identity_file, "-o", "IdentitiesOnly=yes"]
    argv.append(f"{host.user}@{host.host}" if host.user else host.host)
    return argv


def run_script(
    spec: ClusterSpec, host: HostSpec, step: str, script: str, timeout: float = 120
) -> Result:
    """Run ``script`` with bash on ``host``; raise StepError when ssh itself fails (exit
    255: unreachable, key refused, host key unknown) or on timeout."""
    argv = [*ssh_command(spec, host), "bash -s"]
    try:
        proc = subprocess.run(
            argv,
            input=script.encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace")
        raise StepError(host.label, step, f"no answer in {timeout:.0f} s", out) from None
    except FileNotFoundError:
        raise StepError(
            host.label, step, "the ssh client is not installed here (apt install openssh-client)"
        ) from None
    output = proc.stdout.decode(errors="replace")
    if proc.returncode == 255:
        raise StepError(host.label, step, _ssh_failure(output, spec), output)
    return Result(proc.returncode, output)


def _ssh_failure(output: str, spec: ClusterSpec) -> str:
    low = output.lower()
    if "host key verification failed" in low or "no matching host key" in low:
        return (
            "the host's key is not in known_hosts (or changed): add it with ssh-keyscan after "
            "checking it, or set trust_on_first_use = true in [ssh] to accept a new host once"
        )
    if "permission denied" in low:
        key = spec.identity_file or "your default key"
        return f"the host refused the SSH key ({key}): is its public key in authorized_keys?"
    if "connection refused" in low or "timed out" in low or "no route" in low:
        return "cannot reach the host over SSH (is it up, and is sshd listening on that port?)"
    if "could not resolve" in low:
        return "cannot resolve the host name"
    return "ssh failed"


def copy_file(
    spec: ClusterSpec, host: HostSpec, step: str, local: str, remote: str, timeout: float = 300
) -> None:
    """Copy the file ``local`` to ``remote`` on ``host`` (a double-quoted shell word, so
    ``$HOME`` works; its directory is created); raises StepError when it fails."""
    command = f'mkdir -p "$(dirname "{remote}")" && cat > "{remote}"'
    try:
        with open(local, "rb") as source:
            proc = subprocess.run(
                [*ssh_command(spec, host), command],
                stdin=source,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
    except subprocess.TimeoutExpired:
        raise StepError(host.label, step, f"copying {local} took over {timeout:.0f} s") from None
    output = proc.stdout.decode(errors="replace")
    if proc.returncode == 255:
        raise StepError(host.label, step, _ssh_failure(output, spec), output)
    if proc.returncode:
        raise StepError(host.label, step, f"cannot write {remote}", output)
