"""``python -m validator``: the same as ``hes-validator``."""

from validator.cli import main

raise SystemExit(main())
