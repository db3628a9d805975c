"""Shared fixtures: small phantom folders written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from textdiffseg.data.phantom import PhantomConfig, write_dataset

COARSE = PhantomConfig(spacing=(4.0, 4.0, 4.0))


@pytest.fixture(scope="session")
def coarse_phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 4-mm phantom cases (every tumour type appears in four consecutive cases)."""
    out = tmp_path_factory.mktemp("phantom4mm")
    write_dataset(out, n=4, seed=7, cfg=COARSE)
    return out
