"""The pytest plugin's machinery (the plugin itself is the public :mod:`agenttrace.pytest_plugin`)."""
