"""`python -m nodeserver`: same as the `nodeserver` console script."""

from __future__ import annotations

import sys

from nodeserver.cli import main

if __name__ == "__main__":
    sys.exit(main())
