"""Who the application is: its id, name and version, the libraries it credits with their licences,
its icons and the bundled model's card.

Qt-free and torch-free at import, so ``diffusion-studio --version`` stays fast and works without a
display.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines import bundled_model
from pipelines.resources import resource_path

if TYPE_CHECKING:
    from importlib.metadata import PackageMetadata

# The reverse-DNS id names the desktop file, the AppStream file, the icons and Qt's desktop file name
# (which Wayland compositors use to match a window to its entry).
APP_ID = "io.github.diffusionstudio.DiffusionStudio"
APP_NAME = "Diffusion Studio"
DISTRIBUTION = "diffusion-studio"
SUMMARY = "Generate images with Stable Diffusion and ControlNet on your own GPU"
PROJECT_LICENCE = "Apache-2.0"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)

# (distribution, what it does here): the dependencies the About dialog credits.
MAIN_DEPENDENCIES = (
    ("torch", "tensor library"),
    ("torchvision", "image operations"),
    ("diffusers", "Stable Diffusion pipelines and samplers"),
    ("transformers", "CLIP text encoders"),
    ("accelerate", "model loading and offload"),
    ("safetensors", "weight files"),
    ("torchsde", "SDE samplers"),
    ("controlnet-aux", "pose and depth detectors"),
    ("opencv-python-headless", "canny edges"),
    ("PySide6-Essentials", "Qt for Python: the window"),
    ("shiboken6", "Qt for Python bindings"),
    ("pillow", "image files"),
    ("numpy", "arrays"),
    ("huggingface-hub", "local model cache"),
    ("tokenizers", "text tokenizers"),
)


def app_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _source_version()


def _source_version() -> str:
    # A checkout run without installing: read pyproject.toml beside the packages.
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        return tomllib.loads(pyproject.read_text("utf-8"))["project"]["version"] + " (source)"
    except (OSError, KeyError, ValueError):
        return "unknown"


@dataclass(frozen=True)
class Licence:
    name: str
    version: str
    licence: str
    purpose: str


def _licence_of(meta: PackageMetadata) -> str:
    expression = meta.get("License-Expression")
    if expression:
        return expression
    text = (meta.get("License") or "").strip()
    # Some packages paste the whole licence text into the field: keep its first line.
    if text and len(text) < 80 and "\n" not in text:
        return text
    classifiers = [
        c.rsplit("::", 1)[-1].strip()
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::")
    ]
    if classifiers:
        return ", ".join(classifiers)
    return text.splitlines()[0] if text else "see the package"


def dependency_licences() -> list[Licence]:
    found = []
    for name, purpose in MAIN_DEPENDENCIES:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(Licence(name, meta["Version"] or "?", _licence_of(meta), purpose))
    return found


def model_card_path() -> Path | None:
    path = resource_path(*bundled_model.FOLDER, "README.md")
    return path if path.is_file() else None


def icon_files() -> dict[int | str, Path]:
    """Size → PNG, and "svg" → the scalable icon, for those present in the resources."""
    folder = resource_path("icons")
    files: dict[int | str, Path] = {}
    for size in ICON_SIZES:
        png = folder / f"diffusion-studio-{size}.png"
        if png.is_file():
            files[size] = png
    svg = folder / "diffusion-studio.svg"
    if svg.is_file():
        files["svg"] = svg
    return files
