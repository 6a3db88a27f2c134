"""`python -m maild` runs the command line."""

import sys

from maild.cli import main

sys.exit(main())
