import sys

from s3compat.cli import main

sys.exit(main())
