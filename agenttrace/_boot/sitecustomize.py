"""Run by Python at start-up under ``agenttrace-instrument``: AgentTrace on, one run per process."""

from agenttrace._instrument import bootstrap

bootstrap()
