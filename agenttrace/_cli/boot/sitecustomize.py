"""Run by Python at start-up under ``agenttrace-instrument``: AgentTrace on, one run per process."""

from agenttrace._cli.instrument import bootstrap

bootstrap()
