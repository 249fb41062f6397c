"""Where Cinder's api-ref samples are: read in place from the workplace's shared copy, never
copied into this repository. Tests that need them skip, saying why, when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = (
    os.environ.get("CINDERBLOCK_API_REF", ""),
    str(_ROOT.parent / "shared" / "cinder-api-ref"),
    "/work/shared/cinder-api-ref",
)
API_REF = next(
    (Path(c) for c in _CANDIDATES if c and Path(c, "v3", "samples").is_dir()),
    Path(_CANDIDATES[1]),
)
SAMPLES = API_REF / "v3" / "samples"


def require_samples() -> None:
    if not SAMPLES.is_dir():
        pytest.skip("Cinder api-ref samples not found (set CINDERBLOCK_API_REF)")
