"""Export: backend exporter, OTLP, spool, zero-code activation, processes."""
