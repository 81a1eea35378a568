"""At exit, before the spool is handed off: is the receiver's address refusing connections?

A short agent sends nothing while it runs (its lane holds spans for ``OTEL_BSP_SCHEDULE_DELAY``),
so at exit nothing says whether the receiver is there. One TCP connect, bounded by
:data:`PROBE_BOUND`, tells a refused, unreachable or unresolvable address apart, which the exit
then says in its usual warning; a receiver that is merely slow (no answer within the bound) is
not waited for and nothing is said, as before.
"""

from __future__ import annotations

import errno
import socket
import threading
import urllib.request
from urllib.parse import urlsplit

from agenttrace.exporters.traffic import mark_exporter_thread, suppress_instrumentation

__all__ = ["PROBE_BOUND", "unreachable"]

# Seconds exit gives the connect: a refused or unroutable loopback or LAN address answers in
# well under a millisecond; a remote one that accepts takes a round trip, and is not waited for.
PROBE_BOUND = 0.05

_REFUSALS = {errno.ECONNREFUSED: "connection refused", errno.EHOSTUNREACH: "host unreachable"}
_REFUSALS[errno.ENETUNREACH] = "network unreachable"


def _through_a_proxy(scheme: str, host: str) -> bool:
    """True when the exporter reaches ``host`` through a proxy (HTTPS_PROXY and NO_PROXY, as requests
    reads them): a direct connect says nothing about it then."""
    proxies = urllib.request.getproxies()
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


def unreachable(url: str, bound: float = PROBE_BOUND) -> str | None:
    """Why nothing can connect to ``url``'s host and port, if a connect says so within ``bound`` seconds.

    None when it connects, when it takes longer (a slow receiver is not failing), when the URL
    has no host, or when a proxy stands between (a direct connect would test the wrong address).
    Runs on an export thread of its own, so the caller waits ``bound`` at most (name resolution
    has no timeout of its own) and no instrumentor records it.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if not host or _through_a_proxy(parts.scheme, host):
        return None
    found: list[str | None] = []

    def attempt() -> None:
        suppress_instrumentation()
        try:
            with socket.create_connection((host, port), timeout=bound):
                found.append(None)
        except socket.gaierror as exc:
            found.append(f"cannot resolve {host}: {exc.strerror or exc} ({type(exc).__name__})")
        except OSError as exc:
            why = _REFUSALS.get(exc.errno or 0)
            found.append(f"{why} ({type(exc).__name__})" if why else None)

    thread = threading.Thread(target=attempt, name="agenttrace-export-probe", daemon=True)
    mark_exporter_thread(thread)
    try:
        thread.start()
    except RuntimeError:  # no new threads (the interpreter is finalising)
        return None
    thread.join(bound)
    return found[0] if found else None
