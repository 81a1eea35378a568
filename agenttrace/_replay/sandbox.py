"""The replay sandbox: a PEP 578 audit hook that sees every raw DNS lookup and socket connect.

Monkeypatching ``socket`` misses references bound before AgentTrace loaded (``from socket
import getaddrinfo``) and C extensions; the interpreter's audit events do not. The hook is added
once, the first time a replay is configured (``sys.addaudithook`` cannot be undone), and costs
one global read per audit event while no replay run is active.

While active, these events are leaks unless accounted for: ``socket.getaddrinfo``,
``socket.gethostbyname``, ``socket.gethostbyaddr``, ``socket.getnameinfo``, ``socket.connect``,
``socket.sendto`` and ``socket.sendmsg`` (datagrams). Accounted for means: an AF_UNIX socket
(asyncio's self-pipe), a destination a relaxed replay let through on purpose (:func:`allow_host`),
the SDK's own export traffic (AgentTrace's export context key, the OpenTelemetry SDK's export
threads, threads marked with :func:`exempt_current_thread`). OpenTelemetry's
suppress-instrumentation key is not an exemption: any library can set it. What a leak does (raise
``DeterminismLeakError`` or warn) is the handler's decision, set by the replay session.

State is process-global under a lock, not in contextvars: asyncio runs ``getaddrinfo`` in an
executor thread that carries no context, and the sandbox must hold there too.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from agenttrace._core.scope import ThreadFlag

__all__ = [
    "allow_host",
    "exempt",
    "exempt_current_thread",
    "install",
    "set_handler",
]

# The handler receives (audit event, readable description of the destination) and raises to
# block the operation; returning lets it proceed.
Handler = Callable[[str, str], None]

_lock = threading.Lock()
_installed = False
_handler: Handler | None = None  # None = inactive: the hook returns at once
_allowed_hosts: set[str] = set()
_allowed_ips: set[str] = set()
_exempt_threads: set[int] = set()
_exempt = ThreadFlag()

_DNS_EVENTS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"})
SOCKET_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})


def install() -> None:
    """Add the audit hook to this interpreter (once; later calls do nothing)."""
    global _installed  # noqa: PLW0603 - one hook per process
    with _lock:
        if _installed:
            return
        _installed = True
    sys.addaudithook(_audit)


def set_handler(handler: Handler | None) -> None:
    """Activate the sandbox with ``handler`` deciding about leaks, or deactivate it (None)."""
    global _handler  # noqa: PLW0603 - process-global mode, see the module docstring
    with _lock:
        _handler = handler
        if handler is None:
            _allowed_hosts.clear()
            _allowed_ips.clear()


def exempt_current_thread() -> None:
    """Mark the calling thread as AgentTrace's own export traffic, never a leak."""
    with _lock:
        _exempt_threads.add(threading.get_ident())


def exempt() -> contextlib.AbstractContextManager[None]:
    """Inside this block the calling thread's DNS and connects are the SDK's own, not the agent's."""
    return _exempt.raised()


def allow_host(host: str, port: int | None = None) -> None:
    """Let the agent reach ``host`` (a call relaxed replay passes through to the real network)."""
    host = host.strip("[]").lower()
    with _lock:
        _allowed_hosts.add(host)
    ips: set[str] = set()
    from agenttrace._capture.record import enter_call, exit_call

    token = enter_call("agenttrace")  # AgentTrace's own lookup, not the agent's: no dns span for it
    with exempt():
        try:
            # Resolve now, on the caller's thread, so the connect that follows (perhaps from an
            # executor thread) can be recognised by its address.
            for info in socket.getaddrinfo(host, port):
                ips.add(str(info[4][0]))
        except (OSError, UnicodeError):
            pass
        finally:
            exit_call(token)
    with _lock:
        _allowed_ips.update(ips)


def _suppressed() -> bool:
    # OpenTelemetry's suppress-instrumentation keys exempt nothing: any library can set them.
    if _exempt.up or threading.get_ident() in _exempt_threads:
        return True
    from agenttrace._capture.record import in_client_call, own_traffic

    # Inside an instrumented client's own call, which replay let through (a live call, a relaxed
    # miss): its lookup and connect are that call's, to its host or through its proxy. Only the
    # call is let through, not its host for other traffic.
    return in_client_call() or own_traffic()


def _address(address: Any) -> tuple[str, str]:
    """``(host, display)`` of a socket address, for IPv4/IPv6 tuples and anything else."""
    if isinstance(address, tuple) and address:
        host = str(address[0])
        port = f":{address[1]}" if len(address) > 1 else ""
        return host, (f"[{host}]{port}" if ":" in host else f"{host}{port}")
    return "", repr(address)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    handler = _handler
    if handler is None or not event.startswith("socket."):
        return
    if event in _DNS_EVENTS:
        target = args[0] if args else None
        if isinstance(target, tuple):  # getnameinfo((host, port), flags)
            host, display = _address(target)
        else:
            host = target.decode("idna", "replace") if isinstance(target, bytes) else str(target)
            display = host if event != "socket.getaddrinfo" or len(args) < 2 or args[1] is None else f"{host}:{args[1]}"
        if host.lower() in _allowed_hosts or host in _allowed_ips or _suppressed():
            return
        handler(event, f"{event.split('.', 1)[1]}({display})")
        return
    if event in SOCKET_EVENTS:
        sock = args[0] if args else None
        family = getattr(sock, "family", None)
        if family == getattr(socket, "AF_UNIX", object()):
            return  # local IPC (asyncio's self-pipe, socketpair): never network I/O
        address = args[1] if len(args) > 1 else None
        host, display = _address(address)
        if host in _allowed_ips or host.lower() in _allowed_hosts or _suppressed():
            return
        handler(event, f"{event.split('.', 1)[1]} to {display}")
