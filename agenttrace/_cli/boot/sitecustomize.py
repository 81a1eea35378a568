"""Run by Python at start-up under ``agenttrace-instrument`` (and in a replaying process's children): AgentTrace
on, one run per process."""

try:
    from agenttrace._cli.instrument import bootstrap
except ImportError:  # an interpreter without agenttrace (another virtual environment): it runs as it would
    pass
else:
    bootstrap()
