import sys

from taskmesh.bench.raw.cli import main

sys.exit(main())
