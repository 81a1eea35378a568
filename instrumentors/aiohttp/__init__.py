"""Record every aiohttp client call (``aiohttp.ClientSession``) with its full payload.

Usage::

    from agenttrace.instrumentors.aiohttp import AiohttpInstrumentor

    AiohttpInstrumentor().instrument()     # every aiohttp.ClientSession is now recorded
    AiohttpInstrumentor().uninstrument()

``@agenttrace.run`` does this for you; ``opentelemetry-instrument`` finds it through the
``agenttrace_aiohttp`` entry point. Install the library with ``pip install 'agenttrace[aiohttp]'``.

Each HTTP attempt is one call span, opened where ``ClientSession`` asks its connector for a
connection: redirects, retries, cookies, auth and decompression stay above the patch. The body
is recorded raw (still content-encoded) as aiohttp's parser receives it, one chunk per network
read, whether the client reads it with ``read()``, ``json()``, ``content.iter_chunked()``,
``iter_any()`` or ``readline()``. In replay no connection is opened: aiohttp's own parser is fed
the recorded bytes, chunk by chunk as the client reads. See docs/instrumentors.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agenttrace._capture.adapters import lazy_instrumentors

if TYPE_CHECKING:
    from agenttrace.instrumentors.aiohttp.instrumentor import AiohttpInstrumentor

__all__ = ["AiohttpInstrumentor"]

__getattr__ = lazy_instrumentors(__name__, __all__)
