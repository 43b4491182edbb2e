"""How many cores tnt may use, and one slot for native compute.

On a 2-core machine, llama.cpp and onnxruntime each at full width at the same time make both crawl (a cluster name
took 37 s instead of 4 s). Both take their width from the cores this process may run on (its affinity, not the
machine's count), and both take `compute_slot` around their native work so they never overlap.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_SLOT = threading.RLock()


def usable_cores() -> int:
    """Cores this process may run on (taskset / cgroup cpusets shrink it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def compute_slot() -> Iterator[None]:
    """Hold while running a native kernel at full width (an embedding batch, a llama.cpp call)."""
    with _SLOT:
        yield
