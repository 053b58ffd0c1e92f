"""Files shipped inside installed packages (model weights, photos), found without importing them."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

from core.errors import RkverifyError


def package_dir(distribution: str) -> Path:
    """Folder of an installed distribution's files (its site-packages root), without importing it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise RkverifyError("environment", "", f"package '{distribution}' is not installed",
                            f"pip install {distribution} (tox.ini installs it for the recipes here)") from None
    return Path(str(dist.locate_file("")))
