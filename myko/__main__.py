"""`python -m myko`: the `myko` command (myko/cli.py)."""

import sys

from myko.cli import main

sys.exit(main())
