"""Where the numbered migrations are: inside the installed package, or in the checkout's ``sql/``.

A wheel carries the repository's ``sql/`` as ``depot_sync/sql`` (pyproject.toml,
``[tool.hatch.build.targets.wheel.force-include]``). A checkout, and the
editable install made from it, has them only at the top of the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

_PACKAGE: Final = Path(__file__).resolve().parent.parent
#: Where a wheel puts the migrations: next to the package's own modules.
PACKAGED_MIGRATIONS_DIR: Final = _PACKAGE / "sql"
#: Where a checkout (or an editable install) has them.
CHECKOUT_MIGRATIONS_DIR: Final = _PACKAGE.parent / "sql"


def default_migrations_dir() -> Path:
    """The installed package's migrations when it carries them, else the checkout's ``sql/``.

    The checkout's path is returned even when it is missing, so that the error
    the migrations give names a directory someone can look for.
    """
    if PACKAGED_MIGRATIONS_DIR.is_dir():
        return PACKAGED_MIGRATIONS_DIR
    return CHECKOUT_MIGRATIONS_DIR
