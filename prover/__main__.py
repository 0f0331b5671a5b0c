import sys

from wmark.prover.cli import main

sys.exit(main())
