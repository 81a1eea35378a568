"""Span exporters shipped with AgentTrace, and the export they feed (installed as ``agenttrace.exporters``).

Local trace files:

* :mod:`~agenttrace.exporters.processor`: the span processor that routes each run's spans to its trace file.
* :mod:`~agenttrace.exporters.local`: trace files in OTLP JSON Lines, the embedded default.

Export to the AgentTrace backend and to OTLP collectors (docs/export.md):

* :mod:`~agenttrace.exporters.setup`: ``configure()``, run by every ``init()``: the targets, the process hooks.
* :mod:`~agenttrace.exporters.hub`: the span processor added to the provider, fanning spans out to the lanes.
* :mod:`~agenttrace.exporters.lanes`: one non-blocking lane per exporter: a queue, a thread, the spool for what fails.
* :mod:`~agenttrace.exporters.exit`: what process exit does with what is not delivered yet, within the exit bound.
* :mod:`~agenttrace.exporters.uploader`: the detached process that sends the spool after the agent exits.
* :mod:`~agenttrace.exporters.backend`: the backend's OTLP/HTTP exporter (the ``agenttrace`` entry point) and its base.
* :mod:`~agenttrace.exporters.otlp_http`: OTLP/HTTP protobuf posts, with the OTLP retry policy.
* :mod:`~agenttrace.exporters.grpc`: OTLP/gRPC export (the ``grpc`` extra), loaded only when asked for.
* :mod:`~agenttrace.exporters.deferred`: the backend lane's exporter before it is built, and the backend's names.
* :mod:`~agenttrace.exporters.spool`: undelivered traces on disk, claimed file by file by whoever sends them.
* :mod:`~agenttrace.exporters.traffic`: marks the exporters' own traffic, so that nothing records it.
"""
