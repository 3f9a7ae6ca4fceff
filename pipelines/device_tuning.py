"""How a loaded pipeline is set up for its device, once per load, never per run.

- Memory options (attention slicing, VAE tiling) change the modules' attention processors and the
  VAE; they are set only when they change (:func:`apply_memory_options`): resetting them every run
  would undo custom processors (fused QKV) and make a compiled UNet recompile.
- On CUDA (:func:`tune_for_device`): cuDNN's autotuner and TF32 matrix products, the UNet, VAE and
  ControlNets in ``channels_last`` (the layout the tensor cores' convolutions want), and the
  attention's query, key and value projections fused into one matrix product where every
  processor is PyTorch's scaled-dot-product attention (kept as it is otherwise); a module that
  gets LoRAs goes back to separate projections, which is where the LoRAs' layers are.
- An opt-in compiled mode (:func:`compile_unet`): ``torch.compile`` on the UNet with inductor's
  cache in the studio's cache folder, so a later start reuses the compiled kernels; the compiled
  UNet recompiles only for a new image size or another set of ControlNets (its guards), because
  nothing else touches its processors after the load.
- :class:`VaeGuard`: a half-precision decode that overflows (NaN or infinity, the "black image")
  is redone in fp32, and said once per model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from pipelines.types import MemoryOptions

log = logging.getLogger(__name__)

CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


def _attention_modules(pipe: Any) -> Iterator[torch.nn.Module]:
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module) and hasattr(component, "set_attention_slice"):
            yield component


def apply_memory_options(pipe: Any, memory: MemoryOptions) -> None:
    """Attention slicing and VAE tiling as ``memory`` asks, touching only what differs."""
    _unfuse_for_adapters(pipe)
    slicing = bool(memory.attention_slicing)
    # The state lives on the modules: a ControlNet pipeline shares the base pipeline's UNet.
    if any(getattr(m, "_studio_slicing", False) != slicing for m in _attention_modules(pipe)):
        if slicing:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
        for module in _attention_modules(pipe):
            module._studio_slicing = slicing
    tiling = bool(memory.vae_tiling)
    if getattr(pipe.vae, "use_tiling", False) != tiling:
        if tiling:
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()


def sdpa_everywhere(module: torch.nn.Module) -> bool:
    """Every attention processor of ``module`` is diffusers' scaled-dot-product one."""
    processors = getattr(module, "attn_processors", None)
    if not processors:
        return False
    return all(type(p).__name__ in ("AttnProcessor2_0", "FusedAttnProcessor2_0")
               for p in processors.values())  # fmt: skip


def fuse_qkv(module: torch.nn.Module) -> bool:
    """Fuse the attention projections of ``module`` where its processors allow; True if done."""
    if not sdpa_everywhere(module) or not hasattr(module, "fuse_qkv_projections"):
        return False
    module.fuse_qkv_projections()
    module._studio_fused = True
    return True


def _unfuse_for_adapters(pipe: Any) -> None:
    # A LoRA's layers sit on the separate query, key and value projections, which a fused
    # processor bypasses: once a module has adapters, it goes back to its own processors.
    for module in _attention_modules(pipe):
        if getattr(module, "_studio_fused", False) and getattr(module, "peft_config", None):
            module.unfuse_qkv_projections()
            module._studio_fused = False
            log.info("%s: fused attention projections undone for its LoRAs", type(module).__name__)


def tune_for_device(pipe: Any, device: torch.device, *, force: bool = False) -> list[str]:
    """Set up ``pipe`` for ``device`` (CUDA only, unless ``force``); what was done, for the log."""
    done: list[str] = []
    if device.type != "cuda" and not force:
        return done
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        done.append("cuDNN autotuning, TF32")
    for name in ("unet", "vae", "controlnet"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            module.to(memory_format=torch.channels_last)
            done.append(f"{name} channels_last")
    for name in ("unet", "controlnet"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module) and fuse_qkv(module):
            done.append(f"{name} fused QKV")
    return done


def compile_cache_folder(environ: dict[str, str] | None = None) -> Path:
    """Where compiled kernels are kept between starts: the studio's cache folder."""
    environ = dict(os.environ) if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "diffusion-studio" / "torch-compile"


def compile_unet(pipe: Any, backend: str = "inductor") -> None:
    """Replace ``pipe.unet`` by its compiled form (once; a compiled UNet is left as it is)."""
    if hasattr(pipe.unet, "_orig_mod"):
        return
    folder = compile_cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    # Inductor reads its cache folder from the environment when it first compiles.
    os.environ.setdefault(CACHE_VARIABLE, str(folder))
    pipe.unet = torch.compile(pipe.unet, backend=backend, dynamic=False)


def is_compiled(module: Any) -> bool:
    return hasattr(module, "_orig_mod")


class VaeGuard:
    """Wraps a VAE's ``decode``: an output with NaN or infinity is decoded again in fp32.

    Checks only while :attr:`armed` (the final image's decode, after the step loop): checking a
    preview would make the loop wait for the GPU.
    """

    def __init__(
        self, vae: torch.nn.Module, on_fallback: Callable[[str], None], armed: bool = True
    ) -> None:
        self.vae = vae
        self.on_fallback = on_fallback
        self.armed = armed
        self.fell_back = 0
        self._decode = vae.decode

    def __enter__(self) -> VaeGuard:
        self._own = self.vae.__dict__.get("decode")  # usually none: the class's method
        self.vae.decode = self.decode
        return self

    def __exit__(self, *exc: object) -> None:
        if self._own is None:
            del self.vae.decode
        else:
            self.vae.decode = self._own

    def decode(self, latents: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        output = self._decode(latents, *args, **kwargs)
        if not self.armed:
            return output
        sample = output[0] if isinstance(output, tuple) else output.sample
        dtype = next(self.vae.parameters()).dtype
        # One check after the loop, for the final image: reading it waits for the GPU, once.
        if dtype == torch.float32 or bool(torch.isfinite(sample).all()):
            return output
        self.fell_back += 1
        self.vae.to(torch.float32)
        try:
            output = self._decode(latents.float(), *args, **kwargs)
        finally:
            self.vae.to(dtype)
        self.on_fallback(
            f"The VAE overflowed in {str(dtype).removeprefix('torch.')} (the image would be "
            "black); it was decoded again in fp32. To avoid the extra decode, use precision "
            "fp32 or a VAE made for half precision."
        )
        return output
