"""How failures read: the messages and error records the head stores for failed work.

Scheduler.FailTask / FailCall / worker exit codes ──▶ these helpers ──▶ RemoteError
payloads stored as the failed task's objects ──▶ raised by ``get`` in the client
"""

from __future__ import annotations

import pickle
import signal

from nbray._base.errors import RemoteError
from nbray._wire import protocol as P

from . import scheduler as S


def error_text(payload: P.Payload) -> str:
    try:
        return str(pickle.loads(payload.data).message)[:500]
    except Exception:
        return "error"


def actor_died_payload(spec: P.TaskSpec, cause: str) -> P.Payload:
    hint = ""
    if "exited with code" in cause or "was killed" in cause:
        hint = (
            ". Set max_restarts (and max_task_retries) on the actor to restart it and retry "
            "its calls"
        )
    err = RemoteError(
        kind="actor_died",
        message=f"the actor died before {spec.name} ({spec.task_id:016x}) completed: {cause}{hint}",
        function_name=spec.name,
        task_id=f"{spec.task_id:016x}",
    )
    return P.Payload(P.ERROR, pickle.dumps(err))


def failure_message(name: str, ins: S.FailTask) -> str:
    tid = f"{ins.task_id:016x}"
    if ins.kind == "oom":
        return (
            f"task {name} ({tid}) was killed by nbray's memory monitor {ins.message}: "
            f"{ins.cause}. Use less memory per task, run fewer at once (more num_cpus or "
            "memory= per task), or raise NBRAY_MEMORY_USAGE_THRESHOLD."
        )
    if ins.kind == "worker_crashed":
        return (
            f"the worker running task {name} ({tid}) died {ins.message}: "
            f"{ins.cause or describe_exit(ins.exit_code)}. Raise max_retries to retry more, "
            "and check the task for crashes in native code or excessive memory use."
        )
    if ins.kind == "cancelled":
        return f"task {name} ({tid}) was cancelled: {ins.message}"
    return ins.message or f"task {name} ({tid}) failed ({ins.kind})"


def describe_exit(code: int | None) -> str:
    """Exit code → a likely cause, like loky's TerminatedWorkerError."""
    if code is None:
        return "its exit code is unknown"
    if code < 0:
        try:
            sig = signal.Signals(-code).name
        except ValueError:
            sig = f"signal {-code}"
        causes = {
            "SIGKILL": "killed by SIGKILL (the OOM killer, or a kill -9)",
            "SIGSEGV": "a segmentation fault",
            "SIGABRT": "an abort in native code",
            "SIGBUS": "a bus error (often a full /dev/shm)",
            "SIGTERM": "terminated by SIGTERM",
        }
        return f"exit code {code}: {causes.get(sig, sig)}"
    return f"exit code {code} (the process exited, e.g. os._exit or sys.exit in the task)"
