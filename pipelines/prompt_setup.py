"""Everything a run's prompts call on, made ready: LoRAs applied, embeddings found, text encoded.

Whatever a prompt names and the run cannot use (a LoRA not found or made for another model, an
embedding that does not fit, a tag that cannot be read) becomes a warning that names it and says
where the studio looked; the run goes on without it. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines import embeddings as ti
from pipelines.errors import ModelFormatError
from pipelines.loras import AdapterState, LoraUse, discover_loras, fits, lora_folders, short_hash
from pipelines.prompt_encoding import Conditioning, encode_prompts
from pipelines.prompt_syntax import ParsedPrompt, find_embedding_names, parse_prompt
from pipelines.types import EngineSettings, GenerationRequest, ModelFamily


@dataclass(frozen=True)
class PreparedPrompts:
    conditioning: Conditioning
    warnings: tuple[str, ...]
    lora_hashes: str  # "name: hash, …" as AUTOMATIC1111 writes them
    ti_hashes: str

    def recorded(self, request: GenerationRequest) -> GenerationRequest:
        """``request`` with the hashes of the LoRAs and embeddings this run used."""
        return replace(request, lora_hashes=self.lora_hashes, ti_hashes=self.ti_hashes)


def _hashes(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{name}: {digest}" for name, digest in pairs)


def _added(use: LoraUse, weight: float, unet_weight: float | None) -> LoraUse:
    unet = None
    if use.unet_weight is not None or unet_weight is not None:
        unet = (use.unet_weight if use.unet_weight is not None else use.weight) + (
            unet_weight if unet_weight is not None else weight
        )
    return replace(use, weight=use.weight + weight, unet_weight=unet)


class PromptResources:
    """The LoRA adapters on the engine's loaded pipeline, and the files prompts may call."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.adapters = AdapterState()

    def prepare(
        self,
        pipe: Any,
        family: ModelFamily,
        model_path: Path,
        request: GenerationRequest,
        guided: bool,
    ) -> PreparedPrompts:
        positive = parse_prompt(request.prompt)
        negative = parse_prompt(request.negative_prompt)
        warnings = self._tag_warnings(positive, negative)
        lora_pairs = self._apply_loras(pipe, family, model_path, positive, warnings)
        vectors, ti_pairs = self._embeddings(pipe, family, model_path, request, guided, warnings)
        if request.clip_skip > 1 and family is ModelFamily.SDXL:
            warnings.append(
                f"Clip skip {request.clip_skip} is not applied: SDXL models always read their "
                "text encoders' penultimate layer."
            )
        conditioning = encode_prompts(
            pipe, family, request.prompt, request.negative_prompt, guided, request.clip_skip,
            vectors,
        )  # fmt: skip
        return PreparedPrompts(
            conditioning, tuple(warnings), _hashes(lora_pairs), _hashes(ti_pairs)
        )

    @staticmethod
    def _tag_warnings(positive: ParsedPrompt, negative: ParsedPrompt) -> list[str]:
        warnings = [
            f"“{tag}” in the prompt cannot be read (write <lora:name:weight>); ignored."
            for tag in positive.problems + negative.problems
        ]
        for tag in positive.networks:
            if not tag.is_lora:
                warnings.append(f"“{tag.source}”: {tag.kind} networks are not supported; ignored.")
        for tag in negative.networks:
            warnings.append(
                f"“{tag.source}” in the negative prompt is not applied (networks are applied from "
                "the prompt only)."
            )
        return warnings

    def _apply_loras(
        self,
        pipe: Any,
        family: ModelFamily,
        model_path: Path,
        parsed: ParsedPrompt,
        warnings: list[str],
    ) -> list[tuple[str, str]]:
        uses: list[LoraUse] = []
        pairs: list[tuple[str, str]] = []
        if parsed.loras:
            found = discover_loras(lora_folders(self.settings.model_folders, model_path))
            context_dim = int(pipe.unet.config.cross_attention_dim)
            for tag in parsed.loras:
                info = found.find(tag.name)
                if info is None:
                    warnings.append(
                        f"LoRA “{tag.name}” was not found; the run goes on without it. Looked "
                        f"in: {found.searched_text()}."
                    )
                    continue
                problem = fits(info, family, context_dim)
                if problem is not None:
                    warnings.append(f"LoRA “{tag.name}” is not applied: {problem}.")
                    continue
                twice = next((i for i, u in enumerate(uses) if u.info.path == info.path), None)
                if twice is not None:  # named twice: its effects add up, as two tags' would
                    uses[twice] = _added(uses[twice], tag.weight, tag.unet_weight)
                    continue
                uses.append(LoraUse(info, tag.weight, tag.unet_weight))
                pairs.append((tag.name, short_hash(info.path, skip_header=True)))
        warnings += self.adapters.apply(pipe, uses)
        # A file that failed to load is warned about above, and not recorded as used.
        return [pair for pair, use in zip(pairs, uses) if self.adapters.holds(use.info.path)]

    def _embeddings(
        self,
        pipe: Any,
        family: ModelFamily,
        model_path: Path,
        request: GenerationRequest,
        guided: bool,
        warnings: list[str],
    ) -> tuple[dict[str, tuple[Any, ...]], list[tuple[str, str]]]:
        folders = ti.embedding_folders(
            self.settings.model_folders, self.settings.embedding_folders, model_path
        )
        found = ti.discover_embeddings(folders)
        if not found.embeddings:
            return {}, []
        by_name = {info.name: info for info in found.embeddings}
        text = request.prompt + ("\n" + request.negative_prompt if guided else "")
        encoders = [pipe.text_encoder] + (
            [pipe.text_encoder_2] if family is ModelFamily.SDXL else []
        )
        widths = tuple(int(e.config.hidden_size) for e in encoders)
        vectors: dict[str, tuple[Any, ...]] = {}
        pairs: list[tuple[str, str]] = []
        for name in find_embedding_names(text, by_name):
            info = by_name[name]
            try:
                vectors[name] = ti.vectors_for(info, widths, self.settings.allow_pickle)
            except ModelFormatError as error:
                warnings.append(f"Embedding “{name}” ({info.path}) is not applied: {error}.")
                continue
            pairs.append((name, ti.embedding_hash(info)))
        return vectors, pairs
