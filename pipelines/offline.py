"""Keep the Hugging Face libraries off the network. Imports nothing heavy: the app calls it first."""

from __future__ import annotations

import os


def set_offline_environment() -> None:
    # Without these, a missing file costs ~20 s of retries against an unreachable hub.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(name, "1")
