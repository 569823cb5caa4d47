"""``python -m liftinv ...``: the command line of :mod:`liftinv.cli` (also what ``torchrun -m liftinv`` runs)."""

import sys

from liftinv.cli import main

if __name__ == "__main__":
    sys.exit(main())
