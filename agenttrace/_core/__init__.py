"""The public API's core: ``@run``, ``step()``, ``set_result()``, ``init()`` and its settings, the
current run and step (scope), the exception hierarchy and the one warning path."""
