"""``python -m lbwire.cli``: the `lbwire` command."""

import sys

from . import main

sys.exit(main())
