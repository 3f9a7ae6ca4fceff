"""Where the package's data lives, in a checkout and in an installed wheel alike."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent / "resources"


@cache
def resource_root() -> Path:
    # In a checkout the folder sits beside the packages; a wheel installs it as the package
    # ``diffusion_studio_resources`` (see pyproject.toml), since a bare top-level "resources" would clash.
    # Checked by its content: another package could install an unrelated top-level "resources".
    if (_CHECKOUT / "configs").is_dir():
        return _CHECKOUT
    spec = importlib.util.find_spec("diffusion_studio_resources")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the studio's resources are not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def resource_path(*parts: str) -> Path:
    return resource_root().joinpath(*parts)
