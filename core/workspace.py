"""Where runs write: the workspace root holds models/, calib_data/ and reports/. It is read at call
time from RKVERIFY_WORKSPACE (default: the checkout), so a test or a user can put every output
elsewhere; recipes and shipped inputs (convert/, photos, models/wheels/) still come from the checkout.
RKVERIFY_CACHE moves the content-keyed caches (default: <workspace>/models/cache)."""
from __future__ import annotations

import os
from pathlib import Path

from core.recipe import PROJECT_ROOT

WORKSPACE_ENV = "RKVERIFY_WORKSPACE"
CACHE_ENV = "RKVERIFY_CACHE"


def workspace() -> Path:
    return Path(os.environ.get(WORKSPACE_ENV) or PROJECT_ROOT)


def models_dir() -> Path:
    return workspace() / "models"


def calib_dir() -> Path:
    return workspace() / "calib_data"


def reports_dir() -> Path:
    return workspace() / "reports"


def cache_dir() -> Path:
    """Caches shared by every recipe and sweep variant: their keys say what made the contents."""
    return Path(os.environ.get(CACHE_ENV) or models_dir() / "cache")
