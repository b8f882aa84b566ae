"""Entry point of ``python -m objstore`` and of the frozen executable."""

import sys

from objstore.cli import main

if __name__ == "__main__":
    sys.exit(main())
