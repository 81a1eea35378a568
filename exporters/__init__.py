"""Span exporters shipped with AgentTrace (installed as ``agenttrace.exporters``).

* :mod:`agenttrace.exporters.local`: trace files in OTLP JSON Lines, the embedded default.
"""
