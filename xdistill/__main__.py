"""``python -m xdistill``."""

import sys

from .cli import main

sys.exit(main())
