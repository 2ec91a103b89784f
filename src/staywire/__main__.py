import sys

from staywire.cli import main

sys.exit(main())
