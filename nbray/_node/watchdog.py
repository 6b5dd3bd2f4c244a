"""The head's watchdog: keeps the node alive and its workers unstuck.

    Head timer (every refresh) ──▶ Watchdog.check(busy workers) ──▶ [(worker, DeathCause)]
    Head SIGKILLs them ──▶ fork server reports the exit ──▶ Scheduler.worker_died(cause)
                                                            ──▶ retry, or a typed error

- **Memory monitor** (Ray's, in spirit and defaults): when the node's memory use — against
  its cgroup's limit when it has one, else the machine's — passes the threshold (0.95),
  kill the worker of the newest task that will be retried, else of the newest task, and
  kill no other until that one is gone. The task fails with ``OutOfMemoryError`` naming it
  once its retries are spent; the head and the kernels are never the ones to go.
- **Hung workers**: a worker stopped by a signal (SIGSTOP; state T) for longer than
  ``hung_after_s`` is killed, so a ``get`` on its task returns. A worker stopped by a
  debugger (traced, state t) is left alone.

Settings (environment of the process that starts the cluster, like Ray's
``RAY_memory_usage_threshold``): ``NBRAY_MEMORY_USAGE_THRESHOLD`` (0 to 1),
``NBRAY_MEMORY_MONITOR_REFRESH_MS`` (0 turns the monitor off) and
``NBRAY_HUNG_WORKER_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from .instructions import BusyWorker, DeathCause

log = logging.getLogger("nbray.head")

DEFAULT_THRESHOLD = 0.95
DEFAULT_REFRESH_MS = 250
DEFAULT_HUNG_AFTER_S = 10.0
HUNG_CHECK_EVERY_S = 0.5
_NO_LIMIT = 1 << 60  # cgroup v1 writes a huge number for "no limit"


class MemoryUse(NamedTuple):
    used: int
    limit: int
    source: str  # "cgroup" or "machine"

    @property
    def fraction(self) -> float:
        return self.used / self.limit if self.limit else 0.0


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _inactive_file(stat: Path, key: str) -> int:
    """Reclaimable page cache, which the kernel drops before it OOM-kills anything."""
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def read_memory_use(cgroup_root: Path = Path("/sys/fs/cgroup")) -> MemoryUse:
    """This node's memory use: its cgroup's (v2, then v1) when the cgroup has a limit
    below the machine's memory, else the machine's (total minus available)."""
    import psutil  # here, not at the top: the head starts without it

    vm = psutil.virtual_memory()
    v2_limit = _read_int(cgroup_root / "memory.max")
    if v2_limit is not None and v2_limit < vm.total:
        current = _read_int(cgroup_root / "memory.current") or 0
        used = current - _inactive_file(cgroup_root / "memory.stat", "inactive_file")
        return MemoryUse(max(used, 0), v2_limit, "cgroup")
    v1 = cgroup_root / "memory"
    v1_limit = _read_int(v1 / "memory.limit_in_bytes")
    if v1_limit is not None and v1_limit < min(vm.total, _NO_LIMIT):
        usage = _read_int(v1 / "memory.usage_in_bytes") or 0
        used = usage - _inactive_file(v1 / "memory.stat", "total_inactive_file")
        return MemoryUse(max(used, 0), v1_limit, "cgroup")
    return MemoryUse(vm.total - vm.available, vm.total, "machine")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a number", name, raw)
        return default


class WatchdogSettings(NamedTuple):
    threshold: float = DEFAULT_THRESHOLD
    refresh_s: float = DEFAULT_REFRESH_MS / 1000
    hung_after_s: float = DEFAULT_HUNG_AFTER_S

    @classmethod
    def from_env(cls) -> WatchdogSettings:
        threshold = _env_float("NBRAY_MEMORY_USAGE_THRESHOLD", DEFAULT_THRESHOLD)
        if not 0.0 < threshold <= 1.0:
            log.warning("NBRAY_MEMORY_USAGE_THRESHOLD=%s is not in (0, 1]: using 0.95", threshold)
            threshold = DEFAULT_THRESHOLD
        refresh_ms = _env_float("NBRAY_MEMORY_MONITOR_REFRESH_MS", DEFAULT_REFRESH_MS)
        hung = _env_float("NBRAY_HUNG_WORKER_TIMEOUT_S", DEFAULT_HUNG_AFTER_S)
        return cls(threshold, max(refresh_ms, 0.0) / 1000, max(hung, 0.1))


def pick_oom_victim(busy: list[BusyWorker], newest_first: Mapping[int, int]) -> BusyWorker | None:
    """Ray's policy: the newest retriable task (or actor that will restart), else the
    newest of all. ``newest_first`` ranks workers by when they were last given work."""
    if not busy:
        return None

    def order(b: BusyWorker) -> tuple[bool, int]:
        return (b.retriable, newest_first.get(b.worker_id, 0))

    return max(busy, key=order)


class Watchdog:
    """Decides which workers to kill; the head does the killing (see module doc)."""

    def __init__(
        self,
        settings: WatchdogSettings,
        read_memory: Callable[[], MemoryUse] = read_memory_use,
    ) -> None:
        self.settings = settings
        self.read_memory = read_memory
        self._killed_pids: set[int] = set()  # memory victims not yet gone
        self._stopped_since: dict[int, float] = {}
        self._next_hung_check = 0.0
        self._warned_no_victim = False

    @property
    def interval(self) -> float:
        """Seconds between checks (hung workers are looked for even without the monitor)."""
        return self.settings.refresh_s or HUNG_CHECK_EVERY_S

    def check(
        self, busy: list[BusyWorker], pids: Mapping[int, int], dispatch_order: Mapping[int, int]
    ) -> list[tuple[int, DeathCause]]:
        """Workers to kill now, each with why. ``pids``: worker id → pid."""
        out = self._check_memory(busy, pids, dispatch_order) if self.settings.refresh_s else []
        now = time.monotonic()
        if now >= self._next_hung_check:
            self._next_hung_check = now + HUNG_CHECK_EVERY_S
            killed = {w for w, _ in out}
            out += [k for k in self._check_hung(busy, pids, now) if k[0] not in killed]
        return out

    def _check_memory(
        self, busy: list[BusyWorker], pids: Mapping[int, int], dispatch_order: Mapping[int, int]
    ) -> list[tuple[int, DeathCause]]:
        self._killed_pids = {p for p in self._killed_pids if _alive(p)}
        if self._killed_pids:
            return []  # wait for the last victim's memory to come back first
        use = self.read_memory()
        if use.fraction < self.settings.threshold:
            self._warned_no_victim = False
            return []
        victim = pick_oom_victim([b for b in busy if b.worker_id in pids], dispatch_order)
        if victim is None:
            if not self._warned_no_victim:
                self._warned_no_victim = True
                log.warning(
                    "memory use %.1f%% is past the threshold, but no worker runs a task: "
                    "the memory is used outside nbray's workers",
                    100 * use.fraction,
                )
            return []
        pid = pids[victim.worker_id]
        self._killed_pids.add(pid)
        text = (
            f"the node's memory use reached {100 * use.fraction:.1f}% of "
            f"{use.limit / 2**30:.1f} GiB ({use.source}), past the threshold of "
            f"{100 * self.settings.threshold:.0f}%; its worker (pid {pid}) used "
            f"{_rss(pid) / 2**20:.0f} MiB"
        )
        log.warning("memory monitor: killing worker %s: %s", victim.worker_id, text)
        return [(victim.worker_id, DeathCause("oom", text))]

    def _check_hung(
        self, busy: list[BusyWorker], pids: Mapping[int, int], now: float
    ) -> list[tuple[int, DeathCause]]:
        import psutil

        out: list[tuple[int, DeathCause]] = []
        seen: dict[int, float] = {}
        for b in busy:
            pid = pids.get(b.worker_id)
            if pid is None or _status(pid) != psutil.STATUS_STOPPED:
                continue
            since = seen[pid] = self._stopped_since.get(pid, now)
            if now - since >= self.settings.hung_after_s:
                text = (
                    f"its worker (pid {pid}) was stopped by a signal (SIGSTOP) for more than "
                    f"{self.settings.hung_after_s:g} s, so nbray killed it"
                )
                log.warning("killing hung worker %s: %s", b.worker_id, text)
                out.append((b.worker_id, DeathCause("worker_crashed", text)))
                seen.pop(pid)
        self._stopped_since = seen
        return out


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _status(pid: int) -> str:
    import psutil

    try:
        return str(psutil.Process(pid).status())
    except psutil.NoSuchProcess:
        return ""


def _rss(pid: int) -> int:
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.NoSuchProcess:
        return 0
