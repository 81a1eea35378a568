"""The trace format: span and event names (schema), OTLP JSON encoding and decoding, reading trace
files, and the one decoder from a call span (or a flattened event) to an exchange."""
