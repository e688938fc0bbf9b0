"""``python -m tui.cli``: the ``ckpt-tui`` console script (what ``ckpt-tui serve`` starts per browser tab)."""

import sys

from tui.cli import main

sys.exit(main())
