import sys

from vecbridge.cli import main

sys.exit(main())
