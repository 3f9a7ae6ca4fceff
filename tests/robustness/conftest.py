"""Fixtures of the fuzz suite: one folder of bad input files, built once per session."""

from __future__ import annotations

import pytest

from tests.robustness.cases import make_bad_files, make_metadata_pngs


@pytest.fixture(scope="session")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    make_bad_files(folder)
    make_metadata_pngs(folder)
    return folder


@pytest.fixture
def out_folder(tmp_path):
    """An output folder holding one file the user already had."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "existing.png").write_bytes(b"keep me")
    return folder
