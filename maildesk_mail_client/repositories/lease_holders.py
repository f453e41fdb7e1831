"""Who holds a lease, and whether that process is gone.

A holder is ``"host:pid:token"`` (``orm/engine_context.py``: ``HOLDER`` plus a
token per run). When the host is this one, the operating system can tell
whether the process still exists, so a worker killed mid-run need not keep
its account locked until the lease expires. About a process on another
host nothing can be known here: it counts as alive, and its lease expires
as usual. Any holder that does not parse (the tests' ``"test:…"``) is
alive too: wrongly waiting for an expiry is safe, wrongly taking over a
live worker's lease is not.

Caveat: the host part is ``socket.gethostname()``. Two containers that are
given the same host name but have separate process namespaces would see
each other's pids as dead; give each worker container its own host name.
"""

import os
import socket


def parse_holder(holder):
    """``(host, pid)`` of a ``"host:pid:token"`` holder, or None when it is not one."""
    if not isinstance(holder, str):
        return None
    parts = holder.rsplit(":", 2)
    if len(parts) != 3:
        return None
    host, pid, _token = parts
    if not host or not (pid.isascii() and pid.isdigit()):
        return None
    pid = int(pid)
    # 0 and negative pids mean process groups to kill(2): never a holder.
    return (host, pid) if pid > 0 else None


def process_is_gone(pid):
    """True when no process ``pid`` runs on this host (or it exited and awaits its reaper)."""
    if os.name != "posix" or pid <= 0:
        return False  # elsewhere os.kill would terminate the process, not probe it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, under another user
        return False
    return _is_zombie(pid)


def _is_zombie(pid):
    # A process that exited but was not reaped yet still answers kill(pid, 0).
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return False
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
    return data[data.rfind(b")") + 2:][:1] == b"Z"


def is_dead_local_holder(holder, hostname=None):
    """True only when ``holder`` names a process of this host that no longer exists.

    ``hostname`` defaults to ``socket.gethostname()``, as in the engine's holders.
    """
    parsed = parse_holder(holder)
    if parsed is None:
        return False
    host, pid = parsed
    if host != (hostname if hostname is not None else socket.gethostname()):
        return False
    return process_is_gone(pid)
