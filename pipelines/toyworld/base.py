"""The toy-world training's foundation: the model parts, the data, checkpoints and the loop.

The stages live in :mod:`pipelines.toyworld.train` (from scratch) and
:mod:`pipelines.toyworld.tune` (from the shipped weights); both build on this module.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipelines.toyworld import world

if TYPE_CHECKING:  # diffusers and transformers load inside the stages that need them
    from diffusers import AutoencoderKL
    from PIL import Image
    from transformers import CLIPTokenizer

DEFAULT_WORK_DIR = Path(
    os.environ.get(
        "TOYWORLD_WORK_DIR", Path.home() / ".cache" / "diffusion-studio-train" / "toy-world"
    )
)
KINDS = ("canny", "pose", "depth")
DEFAULT_STEPS = {"vae": 600, "decoder": 3000, "unet": 6000, "controlnet": 1500, "text": 3000}
BATCH = {"vae": 16, "decoder": 16, "unet": 32, "controlnet": 32, "text": 32}
LR = {"vae": 2e-3, "decoder": 5e-4, "unet": 6e-4, "controlnet": 1e-3, "text": 1e-3}
TEXT_DIM = 64
UNET_BLOCKS = (48, 96, 96)
VAE_BLOCKS = (16, 32, 64, 64)
CAPTION_DROPOUT = 0.1  # empty captions teach the unconditional model that CFG needs
OFFSET_NOISE = 0.1  # lets flat, saturated backgrounds come out of the sampler
MIN_SNR_GAMMA = 5.0
TRAIN_SAMPLES = 10000
POSE_SAMPLES = 3000
POSE_SEED_BASE = 5_000_000
SHAPE_SEED_BASE = 2_000_000  # the UNet fine-tuning's extra shape scenes (--shape-samples)
HELD_OUT_SEED_BASE = 10_000_000  # evaluate.py draws its samples from here on


# ---- components -------------------------------------------------------------------------------


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=VAE_BLOCKS,
        layers_per_block=1,
        latent_channels=4,
        # Four channels a group at least: with one a group, GroupNorm wipes out a flat colour.
        norm_num_groups=4,
        sample_size=world.SIZE,
    )


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=49408,  # the real CLIP tokenizer's vocabulary
        hidden_size=TEXT_DIM,
        intermediate_size=TEXT_DIM * 4,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        projection_dim=TEXT_DIM,
    )
    return CLIPTextModel(config)


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=world.SIZE // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=UNET_BLOCKS,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def build_scheduler():
    from diffusers import EulerDiscreteScheduler

    # Stable Diffusion's own training schedule.
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        steps_offset=1,
        timestep_spacing="leading",
    )


def tokenizer():
    from transformers import CLIPTokenizer

    from pipelines.resources import resource_path

    return CLIPTokenizer.from_pretrained(resource_path("tokenizers", "clip"))


# ---- data -------------------------------------------------------------------------------------


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def build_dataset(
    count: int, seed_base: int = 0, kind: str | None = None, maps: Sequence[str] = ()
) -> dict:
    from pipelines.toyworld.captions import scene_things

    images, captions, conds, facts = [], [], {m: [] for m in maps}, []
    for i in tqdm(range(count), desc=f"world samples ({kind or 'all'})", leave=False):
        sample = world.make_sample(seed_base + i, kind=kind)
        images.append(_to_tensor(sample.image))
        captions.append(sample.caption)
        facts.append((scene_things(sample), sample.background))
        for m in maps:
            conds[m].append(_to_tensor(getattr(sample, m)))
    # facts: what each caption says, so a stage can say it in other words (captions.paraphrase)
    data = {"images": torch.stack(images), "captions": captions, "facts": facts}
    for m in maps:
        data[m] = torch.stack(conds[m])
    return data


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float() / 127.5 - 1.0


def tokenize(tok: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    return tok(
        captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids  # fmt: skip


# ---- checkpoints ------------------------------------------------------------------------------


def checkpoint_path(work_dir: Path, stage: str) -> Path:
    return work_dir / f"{stage}.pt"


def save_checkpoint(path: Path, state: dict | torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a run killed mid-save keeps the previous checkpoint


def load_checkpoint(path: Path) -> dict | None:
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def require(work_dir: Path, stage: str) -> dict:
    state = load_checkpoint(checkpoint_path(work_dir, stage))
    if state is None:
        sys.exit(f"The {stage} stage has no checkpoint in {work_dir}; train it first.")
    return state


class Ema:
    def __init__(self, modules: list[torch.nn.Module], decay: float = 0.999) -> None:
        self.decay = decay
        self.shadow = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]

    @torch.no_grad()
    def update(self, modules: list[torch.nn.Module], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for shadow, module in zip(self.shadow, modules):
            if not any(p.requires_grad for p in module.parameters()):
                continue  # frozen: its average is itself, and averaging would only add rounding
            for k, v in module.state_dict().items():
                if v.dtype.is_floating_point:
                    shadow[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                else:
                    shadow[k].copy_(v)


# ---- the training loop ------------------------------------------------------------------------


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    if state.get("optimizer"):  # imported weights (``train import``) have none
        optimizer.load_state_dict(state["optimizer"])


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware fast enough to pay (AMX tiles).

    AVX-512 BF16 alone does not: measured on an AMD EPYC with it, a canny ControlNet step at
    batch 32 took 0.33 s under bf16 autocast against 0.28 s in fp32 (the model is too small for
    the conversions to pay off); Intel's AMX is where the 2.9x per UNet step was measured.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


def use_bf16(args: argparse.Namespace) -> bool:
    if args.precision == "bf16":
        return True
    if args.precision == "fp32":
        return False
    device = _device(args.device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def autocast(args: argparse.Namespace, modules: Sequence[torch.nn.Module]):
    """bf16 autocast where the hardware makes it faster; weights and optimizer stay fp32."""
    device = next((p.device for m in modules for p in m.parameters()), torch.device("cpu"))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(args))


def _lr(step: int, base: float, warmup: int = 100, total: int = 0, decay: int = 0) -> float:
    """Warm up over ``warmup`` steps; then, over the last ``decay`` steps before ``total``, cool
    down linearly to a tenth: the last steps settle instead of jittering around a minimum."""
    rate = base * min(1.0, (step + 1) / warmup)
    if decay and step >= total - decay:
        rate *= 1.0 - 0.9 * min(1.0, (step - (total - decay)) / decay)
    return rate


def _loop(
    args: argparse.Namespace,
    state: dict | None,
    modules: list[torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    ema: Ema | None,
    step_fn: Callable[[torch.Generator], torch.Tensor],
    extra: Callable[[], dict],
    report: Callable[[], str] | None = None,
) -> None:
    """Run steps ``state['step']..args.steps`` of a stage, saving checkpoints as it goes."""
    path = checkpoint_path(args.work_dir, args.stage_name)
    step = state["step"] if state else 0
    if step >= args.steps:
        print(f"{args.stage_name}: already at step {step} (>= {args.steps}); nothing to do.")
        return
    bar = tqdm(total=args.steps, initial=step, desc=args.stage_name, dynamic_ncols=True)
    losses: list[float] = []
    started = time.perf_counter()
    elapsed0 = state.get("seconds", 0.0) if state else 0.0
    # Imported weights come without an optimizer: a fresh one warms up again from here.
    warm_from = state.get("warm_from", 0) if state and state.get("optimizer") else step

    def save() -> None:
        save_checkpoint(path, {
            "step": step,
            "modules": [m.state_dict() for m in modules],
            "optimizer": optimizer.state_dict(),
            "ema": ema.shadow if ema else None,
            "seconds": elapsed0 + time.perf_counter() - started,
            "config": vars_json(args),
            "warm_from": warm_from,
            **extra(),
        })  # fmt: skip

    while step < args.steps:
        if args.minutes and time.perf_counter() - started > args.minutes * 60:
            print(f"{args.stage_name}: --minutes {args.minutes:g} reached at step {step}")
            break
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step - warm_from, args.lr, total=args.steps - warm_from,
                              decay=args.decay_steps)  # fmt: skip
        with autocast(args, modules):
            loss = step_fn(generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for m in modules for p in m.parameters()], 1.0)
        optimizer.step()
        step += 1
        if ema:
            ema.update(modules, step)
        losses.append(loss.item())
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-100:]):.4f}")
        if step % args.save_every == 0 or step == args.steps:
            save()
        if report and step % 100 == 0:
            bar.write(f"{args.stage_name} step {step}: {report()}")
    save()
    bar.close()
    print(f"{args.stage_name}: step {step}, loss (last 100) {np.mean(losses[-100:]):.4f}, "
          f"{elapsed0 + time.perf_counter() - started:.0f} s in all; checkpoint {path}")  # fmt: skip


def vars_json(args: argparse.Namespace) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}


def trained_vae(work_dir: Path):
    """The VAE as exported: the ``vae`` stage, with the sharpened decoder when there is one."""
    vae = build_vae()
    vae.load_state_dict(require(work_dir, "vae")["ema"][0])
    decoder = load_checkpoint(checkpoint_path(work_dir, "decoder"))
    if decoder is not None:
        torch.nn.ModuleList([vae.post_quant_conv, vae.decoder]).load_state_dict(decoder["ema"][0])
    return vae


def psnr(recon: torch.Tensor, x: torch.Tensor) -> float:
    mse = F.mse_loss((recon + 1) / 2, (x + 1) / 2).item()
    return 10 * math.log10(1 / max(mse, 1e-10))


@torch.no_grad()
def encode(
    vae: AutoencoderKL, images: torch.Tensor, device: torch.device, batch: int = 256
) -> torch.Tensor:
    """Latent means and stds, (N, 8, h, w)."""
    out = []
    for i in range(0, len(images), batch):
        dist = vae.encode(to_model_range(images[i : i + batch]).to(device)).latent_dist
        out.append(torch.cat([dist.mean, dist.std], 1).cpu())
    return torch.cat(out)


def _frozen_vae(args: argparse.Namespace, device: torch.device) -> AutoencoderKL:
    vae = build_vae()
    vae.load_state_dict(require(args.work_dir, "vae")["ema"][0])
    return vae.to(device).eval().requires_grad_(False)


def _latents(
    args: argparse.Namespace, vae: AutoencoderKL, device: torch.device, name: str, data: dict
) -> torch.Tensor:
    """Encoded once per dataset and kept beside the checkpoints."""
    vae_step = require(args.work_dir, "vae")["step"]  # a retrained VAE needs new latents
    world_hash = world.fingerprint()
    path = args.work_dir / f"latents-{name}-{len(data['images'])}-vae{vae_step}-{world_hash}.pt"
    if path.exists():
        return torch.load(path)
    moments = encode(vae, data["images"], device)
    save_checkpoint(path, moments)  # atomically: two stages may encode the same data at once
    return moments


def _sample_latents(moments: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mean, std = moments.chunk(2, dim=1)
    return mean + std * torch.randn(mean.shape, generator=generator)


def _noise(latents: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    b, c = latents.shape[:2]
    noise = torch.randn(latents.shape, generator=generator)
    noise = noise + OFFSET_NOISE * torch.randn((b, c, 1, 1), generator=generator)
    timesteps = torch.randint(0, 1000, (b,), generator=generator)
    return noise, timesteps


def _diffusion_loss(
    prediction: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    cells: torch.Tensor | None = None,
) -> torch.Tensor:
    """Min-SNR weighted noise error; ``cells`` (N, 1, h, w) weighs the latent cells within each
    sample (see :func:`foreground_cells`), keeping each sample's total weight."""
    snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
    weight = torch.clamp(snr, max=MIN_SNR_GAMMA) / snr  # min-SNR weighting, epsilon target
    error = F.mse_loss(prediction.float(), noise, reduction="none")
    if cells is None:
        per_sample = error.mean(dim=(1, 2, 3))
    else:
        cells = cells.to(error.device)
        per_sample = (error * cells).mean(dim=(1, 2, 3)) / cells.mean(dim=(1, 2, 3))
    return (per_sample * weight.to(per_sample.device)).mean()


def foreground_cells(images: torch.Tensor, side: int, focus: float) -> torch.Tensor:
    """(N, 1, side, side) loss weights: 1 + ``focus`` on the latent cells that hold any pixel
    far from the image's border colour (as ``evaluate.foreground`` tells a shape). A small star
    covers 9 of 64 cells; unweighted, the easy background outweighs its points, and the UNet
    learns to draw it as a blob."""
    x = images.float()
    border = torch.cat(
        [x[:, :, :2].flatten(2), x[:, :, -2:].flatten(2),
         x[:, :, :, :2].flatten(2), x[:, :, :, -2:].flatten(2)], dim=2,
    )  # fmt: skip
    background = border.median(dim=2).values[..., None, None]
    mask = ((x - background).norm(dim=1, keepdim=True) > world.FOREGROUND_DISTANCE).float()
    return 1.0 + focus * F.adaptive_max_pool2d(mask, side)


def _noise_schedule():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(build_scheduler().config)
    return scheduler, scheduler.alphas_cumprod
