import sys

from dcapps.cli import main

sys.exit(main())
