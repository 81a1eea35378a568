"""Record every httpx2 call (the client of the current openai and anthropic SDKs).

Usage::

    from agenttrace.instrumentors.httpx2 import Httpx2Instrumentor

    Httpx2Instrumentor().instrument()

httpx2 is a fork of httpx with the same layout, so this shares the httpx adapter; install the
library with ``pip install 'agenttrace[httpx2]'``. See docs/instrumentors.md.
"""

from __future__ import annotations

from agenttrace.instrumentors.httpx import HttpxFamilyInstrumentor

__all__ = ["Httpx2Instrumentor"]


class Httpx2Instrumentor(HttpxFamilyInstrumentor):
    """OTel instrumentor recording full httpx2 payloads (requires ``httpx2``)."""

    module_name = "httpx2"
    library = "httpx2"
    requirement = "httpx2 >= 2.0"
    extra = "httpx2"
