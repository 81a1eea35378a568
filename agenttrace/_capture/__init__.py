"""Recording: the neutral exchange model every instrumentor feeds, payload encoding, redaction and
filters, the patching helpers, and the call span each intercepted exchange becomes."""
