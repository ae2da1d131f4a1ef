"""``python -m mbiapo.cli``: the same as the ``mbiapo`` command."""

import sys

from mbiapo.cli import main

sys.exit(main())
