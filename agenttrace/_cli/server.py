"""``agenttrace server``: run the self-hosted backend (ingest, store, API, web UI) on uvicorn.

Every option has an ``AGENTTRACE_SERVER_*`` variable; the option wins over the variable, the
variable over the default (docs/server.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from typing import Any

from agenttrace._core.config import API_KEY_PREFIXES
from agenttrace._core.errors import ConfigurationError

__all__ = ["add_arguments", "listening_socket", "run", "settings"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318  # OTLP/HTTP's port: OpenTelemetry's own exporters find the server there too
DEFAULT_DATABASE = "sqlite:///.agenttrace/server.db"
DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_HEADER_TIMEOUT = 10.0
# Idle time of a kept-alive connection before it is closed: longer than OpenTelemetry's batch
# exporters wait between exports (5 s), so their connection is reused rather than raced.
KEEP_ALIVE_TIMEOUT = 15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``agenttrace server``."""
    parser.add_argument("--host", help=f"address to listen on (AGENTTRACE_SERVER_HOST; default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", help=f"port to listen on, 0 for any free one (AGENTTRACE_SERVER_PORT; default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--database",
        help="sqlite:///path/to/file.db or postgresql://user:password@host/db "
        f"(AGENTTRACE_SERVER_DATABASE; default {DEFAULT_DATABASE})",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="a key clients must send (repeat for several; AGENTTRACE_SERVER_API_KEYS, comma-separated); "
        "none: no authentication, allowed on a loopback address only",
    )
    parser.add_argument(
        "--max-request-bytes",
        help=f"largest OTLP request accepted, after decompression (AGENTTRACE_SERVER_MAX_REQUEST_BYTES; "
        f"default {DEFAULT_MAX_REQUEST_BYTES})",
    )
    parser.add_argument(
        "--prices",
        metavar="FILE",
        help="a TOML price table extending and overriding the bundled one (AGENTTRACE_PRICES_FILE)",
    )
    parser.add_argument(
        "--request-timeout",
        help="seconds an upload may stall before it is answered 408 and its turn given up "
        f"(AGENTTRACE_SERVER_REQUEST_TIMEOUT; default {DEFAULT_REQUEST_TIMEOUT:g})",
    )
    parser.add_argument(
        "--retention",
        metavar="AGE",
        help="delete traces that started longer ago than AGE (30d, 12h, 90m, 2w), in the background "
        "(AGENTTRACE_SERVER_RETENTION; default: keep every trace)",
    )
    parser.add_argument(
        "--max-connections",
        help="connections open at once; one more closes the longest-open one not being answered "
        f"(AGENTTRACE_SERVER_MAX_CONNECTIONS; default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--header-timeout",
        help="seconds a request's head (request line and headers) may take to arrive before the connection is "
        f"closed (AGENTTRACE_SERVER_HEADER_TIMEOUT; default {DEFAULT_HEADER_TIMEOUT:g})",
    )


def _pick(arg: Any, variable: str, default: Any) -> tuple[Any, str]:
    if arg is not None:
        return arg, "the command line"
    value = os.environ.get(variable)
    if value is not None and value.strip():
        return value, variable
    return default, "the default"


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The server's settings from ``args`` and the environment; ConfigurationError names a bad one."""
    host, _ = _pick(args.host, "AGENTTRACE_SERVER_HOST", DEFAULT_HOST)
    port_text, port_from = _pick(args.port, "AGENTTRACE_SERVER_PORT", DEFAULT_PORT)
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigurationError(
            f"port {port_text!r} (from {port_from}) is not valid; expected a number from 0 to 65535"
        ) from None
    database, _ = _pick(args.database, "AGENTTRACE_SERVER_DATABASE", DEFAULT_DATABASE)
    limit_text, limit_from = _pick(
        args.max_request_bytes, "AGENTTRACE_SERVER_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES
    )
    try:
        limit = int(limit_text)
        if limit < 1024:
            raise ValueError
    except ValueError:
        raise ConfigurationError(
            f"max_request_bytes {limit_text!r} (from {limit_from}) is not valid; "
            "expected a number of bytes, 1024 or more"
        ) from None
    timeout_text, timeout_from = _pick(
        getattr(args, "request_timeout", None), "AGENTTRACE_SERVER_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT
    )
    try:
        request_timeout = float(timeout_text)
        if not 0 < request_timeout <= 3600:
            raise ValueError
    except ValueError:
        raise ConfigurationError(
            f"request_timeout {timeout_text!r} (from {timeout_from}) is not valid; expected seconds, more than 0 "
            "and at most 3600"
        ) from None
    max_connections = _number(
        getattr(args, "max_connections", None), "AGENTTRACE_SERVER_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, int, 4
    )
    header_timeout = _number(
        getattr(args, "header_timeout", None), "AGENTTRACE_SERVER_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT, float, 0
    )
    if args.api_keys:
        keys, keys_from = list(args.api_keys), "--api-key"
    else:
        text = os.environ.get("AGENTTRACE_SERVER_API_KEYS", "")
        keys, keys_from = [k.strip() for k in text.split(",") if k.strip()], "AGENTTRACE_SERVER_API_KEYS"
    for number, key in enumerate(keys, 1):
        if not key.startswith(API_KEY_PREFIXES) or len(key) < 16:
            # Never the key itself in the message: it may be a real secret.
            raise ConfigurationError(
                f"API key #{number} (from {keys_from}) is not valid: AgentTrace clients send keys that begin with "
                f"'at_live_' or 'at_test_', and a key needs at least 16 characters (got {len(key)} characters)"
            )
    if not keys and not _loopback(str(host)):
        raise ConfigurationError(
            f"host {host!r} is reachable from other machines, and no API key is set: anyone there could read "
            "and write every trace; give keys with --api-key or AGENTTRACE_SERVER_API_KEYS, or listen on 127.0.0.1"
        )
    retention_text, retention_from = _pick(getattr(args, "retention", None), "AGENTTRACE_SERVER_RETENTION", None)
    retention = None
    if retention_text is not None:
        from agenttrace._server.retention import parse_age

        retention = parse_age(str(retention_text))
        if retention is None:
            raise ConfigurationError(
                f"retention {retention_text!r} (from {retention_from}) is not valid; expected an age such as "
                "30d, 12h, 90m, 3600s or 2w (a whole number above 0 and one of the units s, m, h, d, w)"
            )
    from agenttrace._format.usage import load_prices

    return {
        "prices": load_prices(getattr(args, "prices", None)),  # a bad file is said at start, not on a page
        "host": str(host),
        "port": port,
        "database": str(database),
        "api_keys": keys,
        "max_request_bytes": limit,
        "request_timeout": request_timeout,
        "retention": retention,
        "max_connections": max_connections,
        "header_timeout": header_timeout,
    }


def _number(arg: Any, variable: str, default: float, kind: type[float], low: float) -> Any:
    """A numeric setting of ``kind`` (int or float) above ``low`` (for an int: at least ``low``), at most 3600
    for seconds; ConfigurationError names it."""
    name = variable.removeprefix("AGENTTRACE_SERVER_").lower()
    text, source = _pick(arg, variable, default)
    try:
        value = kind(text)
        if (kind is int and value < low) or (kind is float and not low < value <= 3600):
            raise ValueError
    except ValueError:
        expected = f"a whole number, {low:g} or more" if kind is int else f"seconds, more than {low:g} and at most 3600"
        raise ConfigurationError(f"{name} {text!r} (from {source}) is not valid; expected {expected}") from None
    return value


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket; OSError if the address cannot be had.

    Created with protocol IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets
    whose protocol says TCP, and without it a small answer on a kept-alive connection waits for
    the client's delayed acknowledgement (about 40 ms a request).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # before the address is printed: a client reading it may connect at once
    except OSError:
        sock.close()
        raise
    return sock


def _within_descriptors(connections: int) -> int:
    """``connections``, lowered to leave room under the process's open-file limit (the database's files, the
    listening socket): past that limit accepting fails and no one, ``/healthz`` included, gets in."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return connections if soft == resource.RLIM_INFINITY else max(4, min(connections, soft - 64))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C, SIGTERM); exit 2 on a bad setting or a port in use."""
    try:
        config = settings(args)
        from agenttrace._server import create_app, web_stack
        from agenttrace._server.store import open_store

        web_stack()  # before the database is created: a missing extra leaves nothing behind
        app_store = open_store(config["database"])
    except ConfigurationError as exc:
        print(f"agenttrace server: {exc}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        app = create_app(
            app_store, config["api_keys"], config["max_request_bytes"], config["request_timeout"], config["prices"]
        )
        family = socket.AF_INET6 if ":" in config["host"] else socket.AF_INET
        try:
            sock = listening_socket(config["host"], config["port"])
        except OSError as exc:
            print(
                f"agenttrace server: cannot listen on {config['host']}:{config['port']} ({exc.strerror}); "
                "pick another with --port or AGENTTRACE_SERVER_PORT",
                file=sys.stderr,
            )
            return 2
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        url = f"http://{shown}:{port}"
        auth = f"{len(config['api_keys'])} API key(s)" if config["api_keys"] else "no authentication (loopback only)"
        print(f"agenttrace server: listening on {url} ({app_store.description}; {auth})", flush=True)
        print(f"agenttrace server: send traces with AGENTTRACE_API_URL={url}; open {url}/ in a browser", flush=True)
        from agenttrace._server.connections import guarded_protocol

        options = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=guarded_protocol(_within_descriptors(config["max_connections"]), config["header_timeout"]),
            timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        )
        server = uvicorn.Server(options)
        retention = None
        if config.get("retention"):
            from agenttrace._server.retention import Retention

            retention = Retention(app_store, config["retention"])
            retention.start()
        try:
            server.run(sockets=[sock])
        finally:
            if retention is not None:
                retention.stop()
        return 0
    finally:
        app_store.close()
