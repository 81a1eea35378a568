"""``python -m agenttrace._cli``: the ``agenttrace`` command without its console script."""

import sys

from agenttrace._cli import main

sys.exit(main())
