"""Record every connection of the ``websockets`` asyncio client: its handshake and every frame.

Usage::

    from agenttrace.instrumentors.websockets import WebSocketsInstrumentor

    WebSocketsInstrumentor().instrument()    # every websockets.asyncio.client.connect is now recorded
    WebSocketsInstrumentor().uninstrument()

``@agenttrace.run`` does this for you; ``opentelemetry-instrument`` finds it through the
``agenttrace_websockets`` entry point (``pip install 'agenttrace[websockets]'``, websockets >= 13).
Each connection is one CLIENT call span: the opening handshake as its request and response
events, every data and close frame sent and received, in order and timed, in one
``agenttrace.websocket`` event. Replay serves the recorded frames on the library's own connection
object without opening a socket, and in governance checks every frame the agent sends. See
docs/instrumentors.md for what is covered (the legacy and sync clients are not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agenttrace._capture.adapters import lazy_instrumentors

if TYPE_CHECKING:
    from agenttrace.instrumentors.websockets.instrumentor import WebSocketsInstrumentor

__all__ = ["WebSocketsInstrumentor"]

__getattr__ = lazy_instrumentors(__name__, __all__)
