"""``python -m las_compiler`` is the ``las`` command."""

import sys

from .cli import main

sys.exit(main())
