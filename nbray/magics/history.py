"""Memory the output history holds: ObjectRefs, and arrays read from the object store, that
only IPython's output history still references.

    %nbray       ──history_holds(shell)──▶ one line per output, with the bytes it holds
    %nbray free  ──free_history(shell)──▶ those outputs dropped from Out, _, __, ___ and _N,
                 then a garbage collection: their ObjectRefs release their objects, and
                 the arrays their shared-memory mappings

IPython keeps every value a cell displayed (``Out[n]``, ``_n``, ``_``, ``__``, ``___``). A
ref shown as a cell's result keeps its object in the store after ``del ref``, and an array
``get`` returned zero-copy keeps the shared memory it views. Only values no user variable
reaches (through lists, tuples, dicts and sets) are reported and freed: freeing the
others would release nothing.
"""

from __future__ import annotations

import gc
import mmap
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nbray._model.object_ref import ObjectRef
from nbray._model.reprs import human_size
from nbray._wire import shm

__all__ = ["HistoryHold", "free_history", "history_holds", "history_summary"]

#: names IPython itself binds in the user namespace (history, inputs, helpers)
_HISTORY_NAME = re.compile(r"_+|_\d+|_i+|_i\d+|_oh|_ih|_dh|Out|In|exit|quit|get_ipython")
_MAX_DEPTH = 4
_MAX_ITEMS = 100_000


@dataclass
class HistoryHold:
    """An output that holds nbray memory no variable reaches."""

    prompt: int  # n of Out[n]
    refs: dict[int, ObjectRef]  # object id -> one of the refs to it in that output
    maps: dict[int, shm.Mapped]  # id(mmap) -> the segment it maps (object id, bytes)
    nbytes: int = 0  # the refs' objects (as far as the store knows) and the maps

    def describe(self) -> str:
        parts = []
        if self.refs:
            parts.append(f"{len(self.refs)} ObjectRef{'s' if len(self.refs) > 1 else ''}")
        if self.maps:
            parts.append(
                f"{len(self.maps)} array{'s' if len(self.maps) > 1 else ''} read zero-copy"
            )
        return f"Out[{self.prompt}]: {', '.join(parts)} ({human_size(self.nbytes)})"


def history_holds(shell: Any) -> list[HistoryHold]:
    """The outputs in ``shell``'s history that hold ObjectRefs or object-store mappings
    that no user variable reaches, oldest first."""
    ns = shell.user_ns
    history = ns.get("_oh") or {}
    user_refs: dict[int, ObjectRef] = {}
    user_maps: dict[int, shm.Mapped] = {}
    hidden = getattr(shell, "user_ns_hidden", {})
    for name, value in list(ns.items()):
        if _HISTORY_NAME.fullmatch(name) or (name in hidden and hidden[name] is value):
            continue
        _collect(value, user_refs, user_maps)
    holds = []
    for prompt, value in sorted(history.items()):
        refs: dict[int, ObjectRef] = {}
        maps: dict[int, shm.Mapped] = {}
        _collect(value, refs, maps)
        refs = {oid: r for oid, r in refs.items() if oid not in user_refs}
        maps = {key: seg for key, seg in maps.items() if key not in user_maps}
        if refs or maps:
            holds.append(HistoryHold(prompt, refs, maps))
    _size(holds)
    return holds


def history_summary(shell: Any) -> str:
    """What ``%nbray`` says of the history: empty when it holds nothing of nbray's."""
    holds = history_holds(shell)
    if not holds:
        return ""
    total = sum(h.nbytes for h in holds)
    lines = [
        f"The output history holds nbray values that no variable refers to any more "
        f"({human_size(total)} in all):"
    ]
    lines += [f"  {h.describe()}" for h in holds]
    lines.append("Run `%nbray free` to let them go (IPython keeps every cell's result).")
    return "\n".join(lines)


def free_history(shell: Any) -> str:
    """Drop the outputs ``history_holds`` finds from every place IPython keeps them, collect
    garbage, and say what was let go."""
    holds = history_holds(shell)
    if not holds:
        return "nbray: the output history holds nothing of nbray's."
    ns = shell.user_ns
    hidden = getattr(shell, "user_ns_hidden", {})
    history = ns.get("_oh") or {}
    hook = shell.displayhook
    for hold in holds:
        value = history.pop(hold.prompt, None)
        for space in (ns, hidden):
            space.pop(f"_{hold.prompt}", None)
        for unders in ("_", "__", "___"):
            if getattr(hook, unders, None) is value:
                setattr(hook, unders, "")
            for space in (ns, hidden):
                if space.get(unders) is value:
                    space[unders] = ""
        last = getattr(shell, "last_execution_result", None)
        if last is not None and getattr(last, "result", None) is value:
            last.result = None
        del value
    gc.collect()  # refs held in cycles (a list that contains itself) go now too
    total = sum(h.nbytes for h in holds)
    outs = ", ".join(f"Out[{h.prompt}]" for h in holds)
    return f"nbray: freed {outs} ({human_size(total)})."


def _collect(value: Any, refs: dict[int, ObjectRef], maps: dict[int, shm.Mapped]) -> None:
    """The ObjectRefs and segment mappings ``value`` reaches, into ``refs`` (object id ->
    one of its refs) and ``maps`` (id of the map -> what it maps)."""
    for item in _walk(value):
        if isinstance(item, ObjectRef):
            refs.setdefault(item.id, item)
            continue
        mapped = _segment_map(item)
        if mapped is not None:
            maps[id(mapped)] = shm.mapped[mapped]


def _walk(value: Any) -> Iterator[Any]:
    """``value`` and what its lists, tuples, dicts and sets contain, a few levels deep."""
    seen: set[int] = set()
    stack = [(value, 0)]
    count = 0
    while stack and count < _MAX_ITEMS:
        item, depth = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        count += 1
        yield item
        if depth >= _MAX_DEPTH:
            continue
        if isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((x, depth + 1) for x in item)
        elif isinstance(item, dict):
            stack.extend((x, depth + 1) for x in item.values())


def _segment_map(item: Any) -> mmap.mmap | None:
    """The object-store mapping an array (or memoryview) views, if it views one."""
    base = item
    for _ in range(8):
        if isinstance(base, mmap.mmap):
            return base if base in shm.mapped else None
        if isinstance(base, memoryview):
            base = base.obj
        elif type(base).__name__ in ("ndarray", "memmap") and hasattr(base, "base"):
            base = base.base
        else:
            return None
    return None


def _size(holds: list[HistoryHold]) -> None:
    """Each hold's bytes: its refs' objects the store knows, plus the maps of other
    objects (a map of one of its refs' objects is that same memory)."""
    refs = [r for h in holds for r in h.refs.values()]
    sizes: dict[int, int] = {}
    if refs:
        try:
            infos = refs[0]._engine.object_info([r.id for r in refs])
        except Exception:  # the cluster is gone: the refs hold nothing there any more
            infos = [{} for _ in refs]
        sizes = {r.id: int(info.get("size") or 0) for r, info in zip(refs, infos, strict=True)}
    for hold in holds:
        hold.nbytes = sum(sizes.get(oid, 0) for oid in hold.refs) + sum(
            m.size for m in hold.maps.values() if m.object_id not in hold.refs
        )
