"""`python -m competition`: the kit's command line (competition.cli)."""

import sys

from competition.cli import main

if __name__ == "__main__":
    sys.exit(main())
