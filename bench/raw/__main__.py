import sys

from bench.raw.cli import main

sys.exit(main())
