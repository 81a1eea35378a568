"""Record every urllib3 exchange (and so every ``requests`` and botocore call) with its full payload.

Usage::

    from agenttrace.instrumentors.urllib3 import Urllib3Instrumentor

    Urllib3Instrumentor().instrument()     # every PoolManager / requests.Session is now recorded
    Urllib3Instrumentor().uninstrument()

The patch sits on ``HTTPConnectionPool._make_request``: one HTTP exchange on one connection,
below urllib3's retries and redirects (each attempt is its own call span, as each is its own
exchange) and below OpenTelemetry's own urllib3/requests instrumentations. Install the
library with ``pip install 'agenttrace[requests]'``. See docs/instrumentors.md.

Response bodies are teed where urllib3 reads raw (still content-encoded) bytes: with
``preload_content=False`` each ``stream()`` chunk reaches the caller the moment it arrives.
The patch itself is ``agenttrace.instrumentors.urllib3.adapter``, which ``@run`` installs directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agenttrace._capture.adapters import lazy_instrumentors

if TYPE_CHECKING:
    from agenttrace.instrumentors.urllib3.instrumentor import Urllib3Instrumentor

__all__ = ["Urllib3Instrumentor"]

__getattr__ = lazy_instrumentors(__name__, __all__)
