"""`python -m segprune.cli ...` runs the `segprune` command."""

import sys

from segprune.cli import main

sys.exit(main())
