"""Where the parts of a transformer-only SD 3.x / Flux.1 file are: its text encoders and VAE in the
folders ComfyUI, Forge and diffusers users keep them in, and the T5 tokenizer, which nothing the
studio ships can stand in for."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipelines.errors import ModelFormatError, ModelNotFoundError
from pipelines.flow_files import ENCODER_FOLDERS, VAE_FOLDERS
from pipelines.model_files import hf_cache_dir, read_safetensors_header, snapshot_of
from pipelines.types import ModelFamily

_ENCODER_NAMES = {
    "clip_l": ("clip_l", "clip-l", "clip_vit_l"),
    "clip_g": ("clip_g", "clip-g", "clip_vit_g", "clip_bigg"),
    "t5xxl": ("t5",),
}


def _models_root(path: Path) -> Path | None:
    # ComfyUI: <root>/models/unet/x.safetensors; Forge: <root>/models/Stable-diffusion/x.safetensors
    for ancestor in list(path.parents)[:4]:
        if ancestor.name.lower() == "models":
            return ancestor
    return None


def companion_folders(path: Path, names: Iterable[str]) -> list[Path]:
    folders = [path.parent]
    root = _models_root(path)
    for base in (root, path.parent):
        if base is not None:
            folders += [base / name for name in names]
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def _safetensors_in(folders: Iterable[Path]) -> list[Path]:
    files = []
    for folder in folders:
        try:
            files += sorted(p for p in folder.iterdir() if p.suffix.lower() == ".safetensors")
        except OSError:
            continue
    return files


def _precision_rank(path: Path) -> tuple[bool, str]:
    return ("fp8" in path.name.lower(), path.name)  # full-precision copies before fp8 ones


def find_text_encoder(path: Path, role: str) -> Path | None:
    """The ``clip_l`` / ``clip_g`` / ``t5xxl`` file for the model at ``path``, or None."""
    words = _ENCODER_NAMES[role]
    matches = [
        f
        for f in _safetensors_in(companion_folders(path, ENCODER_FOLDERS))
        if f != path and any(w in f.name.lower() for w in words)
    ]
    return min(matches, key=_precision_rank) if matches else None


def find_vae(path: Path, family: ModelFamily) -> Path | None:
    """A 16-channel VAE beside the model whose name does not say it is the other family's."""
    own, other = ("flux", "ae"), ("sd3", "sd_3", "sd35")
    if family is ModelFamily.SD3:
        own, other = other, own
    candidates = []
    for file in _safetensors_in(companion_folders(path, VAE_FOLDERS)):
        if file == path:
            continue
        stem = file.stem.lower()
        if any(w in stem for w in other) and not any(w in stem for w in own):
            continue
        try:
            header = read_safetensors_header(file)
        except ModelFormatError:
            continue
        shape = _tensor_shape(header, "decoder.conv_in.weight")
        if shape and len(shape) == 4 and shape[1] == 16:
            candidates.append((not (stem == "ae" or any(w in stem for w in own)), file.name, file))
    return min(candidates)[2] if candidates else None


def _tensor_shape(header: dict[str, Any], key: str) -> list[int] | None:
    entry = header.get(key)
    return list(entry.get("shape", [])) if isinstance(entry, dict) else None


def _hf_cache_snapshots() -> list[tuple[str, Path]]:
    cache = hf_cache_dir()
    found = []
    try:
        repos = sorted(cache.iterdir())
    except OSError:
        return []
    for repo in repos:
        name = repo.name.lower()
        if name.startswith("models--") and any(
            w in name for w in ("flux", "stable-diffusion-3", "sd3", "t5")
        ):
            snapshot = snapshot_of(repo)
            if snapshot is not None:
                found.append((name, snapshot))
    return found


def t5_tokenizer_places(
    model: Path, encoder: Path | None = None, slot: str = "tokenizer_2"
) -> list[Path]:
    """Every folder a T5 tokenizer for ``model`` may be in, nearest first. A diffusers folder keeps
    it in ``slot``: tokenizer_2 for Flux.1, tokenizer_3 for SD 3.x."""
    if model.is_dir():
        places = [model / slot, model]
    else:
        base = model.parent
        places = [base, base / "tokenizer_2", base / "tokenizer_3", base / "t5_tokenizer"]
    if encoder is not None:
        places += [encoder.parent, encoder.parent / "t5_tokenizer"]
    root = _models_root(model)
    if root is not None:  # ComfyUI ships one with its code
        places.append(root.parent / "comfy" / "text_encoders" / "t5_tokenizer")
    for name, snapshot in _hf_cache_snapshots():
        places += [snapshot / "tokenizer_2", snapshot / "tokenizer_3"]
        if "t5" in name:
            places.append(snapshot)
    unique: list[Path] = []
    for place in places:
        if place not in unique:
            unique.append(place)
    return unique


def _is_t5_tokenizer_folder(folder: Path) -> bool:
    if (folder / "spiece.model").is_file():
        return True
    if not (folder / "tokenizer.json").is_file():
        return False
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        config = {}
    kind = str(config.get("tokenizer_class") or "") if isinstance(config, dict) else ""
    # A CLIP tokenizer folder (SD 3's tokenizer_2) carries a tokenizer.json too.
    return kind.startswith("T5") if kind else not (folder / "vocab.json").exists()


def find_t5_tokenizer(model: Path, encoder: Path | None = None, slot: str = "tokenizer_2") -> Path:
    places = t5_tokenizer_places(model, encoder, slot)
    for place in places:
        if _is_t5_tokenizer_folder(place):
            return place
    looked = "; ".join(str(p) for p in places)
    raise ModelNotFoundError(
        f"{model.name} needs the T5 tokenizer: the file spiece.model (or tokenizer.json) of "
        "google/t5-v1_1-xxl, as in the tokenizer_2 folder of FLUX.1-dev or the tokenizer_3 folder "
        f"of stable-diffusion-3-medium-diffusers. It was not found. Looked in: {looked}. Put "
        "spiece.model beside the model, or keep that model's folder in the Hugging Face cache."
    )


def load_t5_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer, T5Tokenizer

    try:
        if (folder / "tokenizer.json").is_file():
            # T5Tokenizer.from_pretrained misreads a saved unigram table; the auto class does not.
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
        # transformers reads spiece.model only through protobuf; sentencepiece reads it alone.
        import sentencepiece

        model = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
        vocab = [(model.id_to_piece(i), model.get_score(i)) for i in range(model.get_piece_size())]
        return T5Tokenizer(vocab=vocab, extra_ids=100)
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelFormatError(f"The T5 tokenizer in {folder} cannot be read: {error}") from error
