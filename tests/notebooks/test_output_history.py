"""Memory held by IPython's output history, in a real kernel: ``%nbray`` names the outputs
that still hold nbray values no variable refers to, and ``%nbray free`` lets them go."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernel_session import KernelSession

pytestmark = pytest.mark.timeout(120)

STORE_BYTES = (
    "from nbray._model import session\n"
    "print('STORE', session.get_engine().cluster_info()['raw']['object_store']['shm_bytes'])"
)


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelSession]:
    k = KernelSession()
    try:
        k.execute("import nbray, numpy as np\nnbray.init(num_cpus=1)").ok()
        yield k
    finally:
        k.close()


def store_bytes(kernel: KernelSession) -> int:
    return int(kernel.execute(STORE_BYTES).ok().stream().split("STORE ", 1)[1])


def prompt(kernel: KernelSession, code: str) -> int:
    """Run ``code`` (an expression shown as the cell's result); its Out[n]."""
    r = kernel.execute(code).ok()
    assert r.data(), f"{code!r} showed no result"
    return int(r.reply["content"]["execution_count"])


def test_outputs_that_alone_hold_objects_are_named_and_freed(kernel: KernelSession) -> None:
    kernel.execute("big = nbray.put(np.ones(5_000_000))\nbig_id = big.id").ok()
    shown_ref = prompt(kernel, "big")  # Out[n] holds the ref
    kernel.execute("arr = nbray.get(big)").ok()
    shown_array = prompt(kernel, "arr")  # and the array, a view of the object's segment
    kernel.execute("kept = nbray.put(np.zeros(3_000_000))").ok()
    shown_kept = prompt(kernel, "[kept]")  # held by a variable too: not the history's
    kernel.execute("del big, arr").ok()
    before = store_bytes(kernel)
    assert before >= 64_000_000

    report = kernel.execute("%nbray").ok().stream()
    assert "The output history holds nbray values that no variable refers to" in report
    assert f"Out[{shown_ref}]: 1 ObjectRef (40.0 MB)" in report
    assert f"Out[{shown_array}]: 1 array read zero-copy (40.0 MB)" in report
    assert f"Out[{shown_kept}]" not in report
    assert "%nbray free" in report

    freed = kernel.execute("%nbray free").ok().stream()
    assert freed.strip() == f"nbray: freed Out[{shown_ref}], Out[{shown_array}] (80.0 MB)."
    kernel.execute(
        "import time\ndeadline = time.monotonic() + 10\n"
        "while session.get_engine().cluster_info()['raw']['object_store']['shm_bytes'] > "
        f"{before - 40_000_000} and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)"
    ).ok()
    assert store_bytes(kernel) <= before - 40_000_000  # the object left the store
    check = kernel.execute(
        "from nbray._wire import shm\n"
        "print(big_id in {m.object_id for m in shm.mapped.values()}, "
        f"{shown_ref} in Out, {shown_array} in Out, {shown_kept} in Out, "
        "float(nbray.get(kept).sum()))"
    ).ok()
    assert check.stream() == "False False False True 0.0\n"  # the mapping went too
    assert "output history" not in kernel.execute("%nbray").ok().stream()
    assert "holds nothing" in kernel.execute("%nbray free").ok().stream()


def test_bad_arguments_say_how_to_use_it(kernel: KernelSession) -> None:
    r = kernel.execute("%nbray frees")
    assert r.status == "error"  # IPython prints a UsageError's message alone
    assert "unexpected arguments 'frees'" in r.stream() and "%nbray free" in r.stream()
