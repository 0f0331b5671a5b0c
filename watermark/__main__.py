import sys

from wmark.watermark.cli import main

sys.exit(main())
