"""Which settings of another tool's PNG the studio cannot apply, to list them instead of dropping
them: "not applied: Denoising strength: 0.7, Hires upscale: 2, …".

The keys read into the request are the ones :func:`pipelines.export.parse_parameters` reads; a few
more only describe the image (hashes, the writing tool's version) and have nothing to apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipelines.types import guess_control_kind

APPLIED_KEYS = frozenset(
    {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Clip skip"}
)  # fmt: skip
# Records of what produced the image: there is nothing to apply, and the studio writes its own.
DESCRIPTIVE_KEYS = frozenset(
    {"Model hash", "VAE hash", "Lora hashes", "TI hashes", "Hashes", "Version"}
)  # fmt: skip
_PLAIN_SCHEDULES = {"automatic", "uniform", "karras", "exponential"}
# Keys of an sd-webui-controlnet unit the studio reads; others are listed.
_UNIT_KEYS = {"Module", "Preprocessor", "Model", "Weight", "Resize Mode", "Guidance Start",
              "Guidance End", "Guidance Strength", "Enabled"}  # fmt: skip
_UNIT_DEFAULTS = {"Control Mode": "Balanced", "Pixel Perfect": "False", "Save Detected Map": "True"}
_UNIT_RE = re.compile(r"ControlNet(?: |-)(\d+)$|ControlNet$")


def split_unit_text(text: str) -> dict[str, str]:
    """The ``Key: value`` items of one sd-webui-controlnet unit's text (it is never quoted
    inside, so a comma always ends a value)."""
    values: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _unit_leftovers(label: str, values: Mapping[str, str]) -> list[str]:
    left: list[str] = []
    module = values.get("Module", values.get("Preprocessor", "none"))
    # The unit reader runs a module whose name says canny, pose or depth (openpose_full,
    # depth_midas, …) as that kind's preprocessor; any other needs its map from the user.
    if module not in ("", "none", "None") and guess_control_kind(module) is None:
        left.append(f"{label} Module: {module} (supply its map)")
    canny = module.lower().startswith("canny")
    for key, value in values.items():
        if key in _UNIT_KEYS or _UNIT_DEFAULTS.get(key) == value:
            continue
        if canny and key in ("Threshold A", "Threshold B"):
            continue
        if key in ("Threshold A", "Threshold B") and value in ("-1", "-1.0", "0.5", "64"):
            continue  # the slots modules without thresholds leave at their defaults
        left.append(f"{label} {key}: {value}")
    return left


def unapplied_settings(fields: Mapping[str, str]) -> list[str]:
    """``Key: value`` for each setting of an AUTOMATIC1111 parameters line the studio does not
    apply (``fields`` as :func:`pipelines.export.split_parameters` gives them)."""
    left: list[str] = []
    for key, value in fields.items():
        if key in APPLIED_KEYS or key in DESCRIPTIVE_KEYS:
            continue
        if key == "Emphasis" and value.strip() == "Original":
            continue  # AUTOMATIC1111's weighting rule, the one the studio applies
        if key == "Schedule type":
            if value.strip().lower() not in _PLAIN_SCHEDULES:
                left.append(f"{key}: {value}")
            continue
        modern = re.fullmatch(r"ControlNet (\d+)", key)
        if modern:
            left += _unit_leftovers(f"ControlNet {modern[1]}", split_unit_text(value))
            continue
        if key.startswith("ControlNet"):
            continue  # the early single-key form: read by the unit reader
        left.append(f"{key}: {value}")
    return left


def not_applied_text(items: list[str]) -> str:
    """One line for the message bar and ``info``: empty when everything was applied."""
    if not items:
        return ""
    shown = items if len(items) <= 12 else [*items[:12], f"and {len(items) - 12} more"]
    return "Not applied: " + "; ".join(shown) + "."
