import sys

from mikata.cli import main

sys.exit(main())
