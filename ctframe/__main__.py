"""``python -m ctframe``: the command line, also what ``torchrun -m ctframe run RECIPE`` starts."""

import sys

from ctframe.commands.main import main

if __name__ == "__main__":
    sys.exit(main())
