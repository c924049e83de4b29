"""``python -m esasrec``: see ``esasrec.cli``."""

import sys

from esasrec.cli import main

if __name__ == "__main__":
    sys.exit(main())
