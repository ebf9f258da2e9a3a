import sys

from aposos.cli import main

sys.exit(main())
