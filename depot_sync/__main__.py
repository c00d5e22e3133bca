"""``python -m depot_sync``: the same as ``hes-depot``."""

from depot_sync.cli import main

raise SystemExit(main())
