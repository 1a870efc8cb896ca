"""``python -m bci`` is the ``bci`` command."""

from bci.cli import main

raise SystemExit(main())
