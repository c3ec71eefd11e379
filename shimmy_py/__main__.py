"""`python -m shimmy_py` runs the `shimmy-py` command line."""
import sys

from .cli import main

sys.exit(main())
