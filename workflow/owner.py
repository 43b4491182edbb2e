"""Which process owns a running run, and whether that process still exists.

A run's status is only as true as the process that writes it: SIGKILL, a native crash or a power cut leave
'running' behind. The owner string lets the next process that opens the database tell a live run from a dead one.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for the owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()[:8]
    except OSError:
        return ""


def this_process() -> str:
    """host:boot:pid:start of the current process."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{_boot_id()}:{pid}:{_start_time(pid) or ''}"


def is_dead(owner: str | None) -> bool:
    """True only when we can tell: the owner ran on this host and is no longer there (or the host rebooted).
    Owners on another host, and runs from before owners were recorded, are left alone."""
    if not owner:
        return False
    try:
        host, boot, pid_s, start = owner.rsplit(":", 3)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    if boot and _boot_id() and boot != _boot_id():
        return True  # power cut or reboot since
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, another user's
    now_start = _start_time(pid)
    return bool(start and now_start and now_start != start)
