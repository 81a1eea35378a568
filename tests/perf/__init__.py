"""AgentTrace's benchmark harness (issue 6): run with ``python -m tests.perf [--quick]``.

Not part of the pytest suite (``norecursedirs``); see ``docs/performance.md``.
"""
