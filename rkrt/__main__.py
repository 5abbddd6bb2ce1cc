"""``python -m rkrt``: see rkrt.cli."""

import sys

from .cli import main

sys.exit(main())
