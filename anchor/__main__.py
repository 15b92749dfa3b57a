"""`python -m anchor ...` is the `anchor` command."""

import sys

from anchor.cli import main

sys.exit(main())
