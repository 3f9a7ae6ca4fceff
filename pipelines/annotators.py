"""Where annotator weights (OpenPose, MiDaS) already live on a user's machine.

People who have used ControlNet before usually have these files: in the Hugging Face cache, in
AUTOMATIC1111's sd-webui-controlnet download folder, or in ComfyUI's controlnet_aux nodes. We look
there instead of downloading anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pipelines.errors import ValidationError, WeightsNotFoundError

# File names as lllyasviel/Annotators and controlnet-aux name them. Only the body model is needed for
# OpenPose: the studio draws the 18-point body skeleton, never hands or faces.
ANNOTATOR_FILES: dict[str, tuple[str, ...]] = {
    "openpose": ("body_pose_model.pth",),
    "depth": ("dpt_hybrid-midas-501f0c75.pt",),
}

# Per-detector subfolders used by sd-webui-controlnet (annotator/downloads/<name>/) and Forge.
_DETECTOR_SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "openpose": ("openpose",),
    "depth": ("midas",),
}

_WEBUI_DOWNLOADS = (
    "extensions/sd-webui-controlnet/annotator/downloads",
    "annotator/downloads",  # the root is the sd-webui-controlnet extension itself
    "models/ControlNetPreprocessor",  # Forge keeps its preprocessors here
)
_COMFY_CKPTS = (
    "custom_nodes/comfyui_controlnet_aux/ckpts/lllyasviel/Annotators",
    "ckpts/lllyasviel/Annotators",  # the root is the comfyui_controlnet_aux node folder itself
)
_HF_REPOS = (
    ("models--lllyasviel--Annotators", ""),
    ("models--lllyasviel--ControlNet", "annotator/ckpts"),
)
_DEFAULT_APP_ROOTS = ("stable-diffusion-webui", "stable-diffusion-webui-forge", "ComfyUI")


def hf_hub_cache() -> Path:
    # Resolved on every call (not from huggingface_hub.constants, fixed at import) so that a changed
    # environment, as in tests or after the user edits settings, is honoured.
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _hf_snapshots(cache: Path) -> list[Path]:
    found: list[Path] = []
    for repo, inner in _HF_REPOS:
        snapshots = cache / repo / "snapshots"
        if not snapshots.is_dir():
            continue
        # Newest snapshot first: an updated download should win over a stale one.
        candidates = sorted(
            (s for s in snapshots.iterdir() if s.is_dir()),
            key=lambda s: s.stat().st_mtime,
            reverse=True,
        )
        found.extend(s / inner if inner else s for s in candidates)
    return found


def _layouts_under(root: Path) -> list[Path]:
    """Annotator folders of the known application layouts below ``root``."""
    found: list[Path] = []
    for relative in _WEBUI_DOWNLOADS:
        downloads = root / relative
        if downloads.is_dir():
            found.extend(downloads / sub for subs in _DETECTOR_SUBFOLDERS.values() for sub in subs)
    found.extend(root / relative for relative in _COMFY_CKPTS)
    found.extend(_hf_snapshots(root))
    found.extend(_hf_snapshots(root / "hub"))  # root is HF_HOME
    return found


def annotator_search_folders(extra: Iterable[Path | str] = ()) -> list[Path]:
    """Existing folders that may hold annotator weights, the user's own folders first.

    ``extra`` entries may be direct weight folders or roots of a webui / ComfyUI install or of a
    Hugging Face cache; the known layouts below them are added after the folder itself.
    """
    candidates: list[Path] = []
    for folder in extra:
        root = Path(folder).expanduser()
        candidates.append(root)
        candidates.extend(_layouts_under(root))
    candidates.extend(_hf_snapshots(hf_hub_cache()))
    home = Path.home()
    for name in _DEFAULT_APP_ROOTS:
        candidates.extend(_layouts_under(home / name))

    result: list[Path] = []
    seen: set[Path] = set()
    for path in candidates:
        if not path.is_dir():
            continue
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            result.append(path)
    return result


def annotator_files(detector: str) -> tuple[str, ...]:
    try:
        return ANNOTATOR_FILES[detector]
    except KeyError:
        known = ", ".join(sorted(ANNOTATOR_FILES))
        raise ValidationError(f"Unknown annotator {detector!r}; known ones: {known}.") from None


def find_annotator(detector: str, folders: Iterable[Path | str]) -> Path:
    """The first folder (or its ``openpose/`` / ``midas/`` subfolder) holding ``detector``'s files."""
    needed = annotator_files(detector)
    subfolders = _DETECTOR_SUBFOLDERS[detector]
    looked: list[Path] = []
    for folder in folders:
        base = Path(folder).expanduser()
        if base in looked:
            continue
        looked.append(base)
        for candidate in (base, *(base / sub for sub in subfolders)):
            if all((candidate / name).is_file() for name in needed):
                return candidate
    where = "\n".join(f"  {p}" for p in looked) if looked else "  (no annotator folder exists yet)"
    raise WeightsNotFoundError(
        f"The {detector} annotator needs {', '.join(needed)} (from the lllyasviel/Annotators "
        f"repository) and it was not found. Put it in one of these folders (or a "
        f"{'/'.join(subfolders)}/ folder inside one), or add the folder that holds it to the "
        f"annotator folders in the settings. Looked in:\n{where}"
    )
