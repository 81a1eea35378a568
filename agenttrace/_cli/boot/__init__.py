"""Holds the ``sitecustomize`` that ``agenttrace-instrument`` puts first on ``PYTHONPATH``."""
