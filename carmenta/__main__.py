import sys

from carmenta.cli import main

sys.exit(main())
