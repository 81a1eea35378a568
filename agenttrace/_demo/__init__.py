"""The bundled demo: a fake LLM server (:mod:`.llm_server`) the ``agenttrace demo`` command and tests use."""
