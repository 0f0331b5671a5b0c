import sys

from wmark.verifier.cli import main

sys.exit(main())
