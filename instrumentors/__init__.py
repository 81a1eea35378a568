"""OpenTelemetry instrumentors that record full I/O payloads (installed as ``agenttrace.instrumentors``)."""
