"""The LoRAs and embeddings the studio finds, listed for ``diffusion-studio models``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipelines.embeddings import discover_embeddings, embedding_folders
from pipelines.loras import discover_loras, lora_folders


def add_on_listing(
    model_folders: Sequence[Path], extra_embedding_folders: Sequence[Path] = ()
) -> tuple[list[str], list[str]]:
    """(lines to show, "file: why it is skipped" lines)."""
    lines = ["", "LoRAs (<lora:NAME:WEIGHT> in the prompt, or --lora NAME:WEIGHT):"]
    loras = discover_loras(lora_folders(model_folders))
    lines += [f"  {info.name}  [{info.family_label}]  {info.path}" for info in loras.loras]
    if not loras.loras:
        lines.append(f"  none; looked in: {loras.searched_text()}")
    lines += ["", "Embeddings (their name in the prompt calls them):"]
    embeddings = discover_embeddings(embedding_folders(model_folders, extra_embedding_folders))
    for info in embeddings.embeddings:
        pickle = "  (a pickle: needs --allow-pickle)" if info.needs_pickle else ""
        lines.append(f"  {info.name}  [{info.family_label}]  {info.path}{pickle}")
    if not embeddings.embeddings:
        searched = ", ".join(str(p) for p in embeddings.searched) or "no embeddings folder exists"
        lines.append(f"  none; looked in: {searched}")
    skipped = [f"{path}: {why}" for path, why in loras.skipped + embeddings.skipped]
    return lines, skipped
