"""``python -m shoal``: the same as the ``shoal`` command."""

from shoal._cli import main

raise SystemExit(main())
