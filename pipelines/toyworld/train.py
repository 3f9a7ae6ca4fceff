"""Train the bundled toy-world model, stage by stage, resumably, then export it.

    python -m pipelines.toyworld.train vae --steps 600
    python -m pipelines.toyworld.train unet --steps 6000
    python -m pipelines.toyworld.train controlnet --kind canny --steps 1500   # pose, depth
    python -m pipelines.toyworld.train export            # fp16 safetensors into resources/models
    python -m pipelines.toyworld.train all                # every stage with the default steps
    python -m pipelines.toyworld.train status             # each stage's step and time so far

Every stage keeps a checkpoint in ``--work-dir`` (saved every ``--save-every`` steps and at the
end) and resumes from it: run the same command again, or with a larger ``--steps``, to continue.
Batches and noise are drawn from generators seeded by ``--seed`` and the step number, so a run
split over several sittings sees the same data as one run. A CUDA GPU is used when present.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
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


def train_vae(args: argparse.Namespace) -> None:
    device = _device(args.device)
    vae = build_vae().to(device)
    with torch.no_grad():  # start with a nearly deterministic posterior: it trains much faster
        vae.quant_conv.bias[4:].fill_(-6.0)
    state = load_checkpoint(checkpoint_path(args.work_dir, "vae"))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    if state:
        vae.load_state_dict(state["modules"][0])
        _load_optimizer(optimizer, state)
    ema = Ema([vae], decay=0.995)
    if state and state.get("ema"):
        ema.shadow = state["ema"]
    data = build_dataset(args.samples)
    images = data["images"]
    held = to_model_range(build_dataset(16, HELD_OUT_SEED_BASE)["images"]).to(device)
    crop = args.crop or world.SIZE

    def step_fn(generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, len(images), (args.batch,), generator=generator)
        # The VAE is convolutional: crops train it as well as whole images, for less time a step.
        top, left = torch.randint(0, world.SIZE - crop + 1, (2,), generator=generator).tolist()
        x = to_model_range(images[index, :, top : top + crop, left : left + crop]).to(device)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(
            posterior.mean.shape, generator=generator
        ).to(device)
        recon = vae.decode(z).sample
        kl = posterior.kl().mean() / x[0].numel()
        return F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-4 * kl

    @torch.no_grad()
    def report() -> str:
        vae.eval()
        recon = vae.decode(vae.encode(held).latent_dist.mean).sample.clamp(-1, 1)
        vae.train()
        return f"held-out PSNR {psnr(recon, held):.1f} dB"

    vae.train()
    _loop(args, state, [vae], optimizer, ema, step_fn, lambda: {}, report)
    report_vae(args)


@torch.no_grad()
def report_vae(args: argparse.Namespace) -> None:
    vae = build_vae()
    vae.load_state_dict(require(args.work_dir, "vae")["ema"][0])
    vae.eval()
    data = build_dataset(64, HELD_OUT_SEED_BASE)
    x = to_model_range(data["images"])
    recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    print(f"vae: held-out PSNR {psnr(recon, x):.1f} dB")


def _edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def train_decoder(args: argparse.Namespace) -> None:
    """Sharpen the VAE's decoder with its encoder frozen.

    The latents do not change, so the UNet and the ControlNets trained on them stay valid: this
    stage can run beside (or after) them. An edge term is added to the pixel losses because a
    small star or triangle spans two latent cells and a blurry decoder rounds it into a blob.
    """
    device = _device(args.device)
    vae = _frozen_vae(args, device)
    vae_step = require(args.work_dir, "vae")["step"]
    state = load_checkpoint(checkpoint_path(args.work_dir, "decoder"))
    decoder = torch.nn.ModuleList([vae.post_quant_conv, vae.decoder])
    decoder.requires_grad_(True)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=args.lr, weight_decay=0.0)
    ema = Ema([decoder], decay=0.995)
    if state:
        decoder.load_state_dict(state["modules"][0])
        _load_optimizer(optimizer, state)
        ema.shadow = state["ema"]
    data = build_dataset(args.samples)
    moments = _latents(args, vae, device, "train", data)
    images = data["images"]

    def step_fn(generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, len(images), (args.batch,), generator=generator)
        z = _sample_latents(moments[index], generator).to(device)
        recon = vae.decoder(vae.post_quant_conv(z))
        x = to_model_range(images[index]).to(device)
        edge_loss = sum(F.l1_loss(a, b) for a, b in zip(_edges(recon), _edges(x)))
        return F.l1_loss(recon, x) + F.mse_loss(recon, x) + edge_loss

    decoder.train()
    _loop(args, state, [decoder], optimizer, ema, step_fn,
          lambda: {"vae_step": vae_step})  # fmt: skip


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
) -> torch.Tensor:
    snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
    weight = torch.clamp(snr, max=MIN_SNR_GAMMA) / snr  # min-SNR weighting, epsilon target
    per_sample = F.mse_loss(prediction.float(), noise, reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weight.to(per_sample.device)).mean()


def _noise_schedule():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(build_scheduler().config)
    return scheduler, scheduler.alphas_cumprod


def train_unet(args: argparse.Namespace) -> None:
    device = _device(args.device)
    vae = _frozen_vae(args, device)
    tok = tokenizer()
    text_encoder, unet = build_text_encoder().to(device), build_unet().to(device)
    modules = [text_encoder, unet]
    params = [p for m in modules for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    state = load_checkpoint(checkpoint_path(args.work_dir, "unet"))
    ema = Ema(modules, decay=0.999)
    if state:
        for m, s in zip(modules, state["modules"]):
            m.load_state_dict(s)
        _load_optimizer(optimizer, state)
        ema.shadow = state["ema"]
    data = build_dataset(args.samples)
    moments = _latents(args, vae, device, "train", data)
    scaling = state["scaling_factor"] if state else float(1.0 / moments[:, :4].std())
    ids = tokenize(tok, data["captions"])
    empty = tokenize(tok, [""])[0]
    scheduler, alphas_cumprod = _noise_schedule()

    def step_fn(generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, len(ids), (args.batch,), generator=generator)
        latents = _sample_latents(moments[index], generator) * scaling
        tokens = ids[index].clone()
        drop = torch.rand(args.batch, generator=generator) < CAPTION_DROPOUT
        tokens[drop] = empty
        noise, timesteps = _noise(latents, generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        hidden = text_encoder(tokens.to(device))[0]
        prediction = unet(noisy.to(device), timesteps.to(device), hidden).sample
        return _diffusion_loss(prediction, noise.to(device), timesteps, alphas_cumprod)

    text_encoder.train()
    unet.train()
    _loop(args, state, modules, optimizer, ema, step_fn,
          lambda: {"scaling_factor": scaling})  # fmt: skip


def train_controlnet(args: argparse.Namespace) -> None:
    from diffusers import ControlNetModel

    device = _device(args.device)
    kind = args.kind
    base = require(args.work_dir, "unet")
    from pipelines.toyworld.tune import text_encoder_for

    text_encoder, unet = text_encoder_for(args.work_dir), build_unet()
    unet.load_state_dict(base["ema"][1])
    text_encoder.to(device).eval().requires_grad_(False)
    unet.to(device).eval().requires_grad_(False)
    torch.manual_seed(args.seed)
    controlnet = ControlNetModel.from_unet(unet).to(device)
    state = load_checkpoint(checkpoint_path(args.work_dir, args.stage_name))
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=args.lr, weight_decay=1e-2)
    ema = Ema([controlnet], decay=0.998)
    if state:
        controlnet.load_state_dict(state["modules"][0])
        _load_optimizer(optimizer, state)
        ema.shadow = state["ema"]
    vae = _frozen_vae(args, device)
    if kind == "pose":  # pose maps are black except on people
        data = build_dataset(args.pose_samples, POSE_SEED_BASE, kind="person", maps=("pose",))
        moments = _latents(args, vae, device, "pose", data)
    else:
        data = build_dataset(args.samples, maps=(kind,))
        moments = _latents(args, vae, device, "train", data)
    if kind == "canny" and args.outline_samples:
        from pipelines.toyworld.tune import add_outlines

        data, moments = add_outlines(args, vae, device, data, moments)
    if kind == "depth" and args.painted_samples:
        from pipelines.toyworld.tune import add_paintings

        data, moments = add_paintings(args, vae, device, data, moments)
    del vae
    scaling = base["scaling_factor"]
    tok = tokenizer()
    ids = tokenize(tok, data["captions"])
    empty = tokenize(tok, [""])[0]
    conditions = data[kind]
    scheduler, alphas_cumprod = _noise_schedule()

    def step_fn(generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, len(ids), (args.batch,), generator=generator)
        latents = _sample_latents(moments[index], generator) * scaling
        if "recaption" in data:  # worded afresh each step (tune.add_outlines)
            rng = random.Random(int(torch.randint(0, 2**31, (1,), generator=generator)))
            tokens = tokenize(tok, data["recaption"](rng, index))
        else:
            tokens = ids[index].clone()
        # More empty prompts than the base: the control alone must be able to place the subject.
        drop = torch.rand(args.batch, generator=generator) < 0.3
        tokens[drop] = empty
        noise, timesteps = _noise(latents, generator)
        noisy = scheduler.add_noise(latents, noise, timesteps).to(device)
        timesteps = timesteps.to(device)
        with torch.no_grad():
            hidden = text_encoder(tokens.to(device))[0]
        cond = conditions[index].float().to(device) / 255.0  # the pipeline feeds maps in 0..1
        down, mid = controlnet(noisy, timesteps, hidden, controlnet_cond=cond, return_dict=False)
        prediction = unet(
            noisy, timesteps, hidden,
            down_block_additional_residuals=down, mid_block_additional_residual=mid,
        ).sample  # fmt: skip
        return _diffusion_loss(prediction, noise.to(device), timesteps.cpu(), alphas_cumprod)

    controlnet.train()
    _loop(args, state, [controlnet], optimizer, ema, step_fn, lambda: {})


# ---- export -----------------------------------------------------------------------------------


def export(args: argparse.Namespace) -> None:
    from diffusers import ControlNetModel, StableDiffusionPipeline

    out = Path(args.out)
    vae_state, base = require(args.work_dir, "vae"), require(args.work_dir, "unet")
    vae, text_encoder, unet = trained_vae(args.work_dir), build_text_encoder(), build_unet()
    vae.register_to_config(scaling_factor=base["scaling_factor"])
    from pipelines.toyworld.tune import text_encoder_for

    text_encoder = text_encoder_for(args.work_dir)
    unet.load_state_dict(base["ema"][1])
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer(), unet=unet,
        scheduler=build_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    folder = out / "toy-world"
    card = folder / "README.md"
    kept = card.read_text() if card.exists() else None
    if folder.exists():
        shutil.rmtree(folder)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    if kept is not None:
        card.write_text(kept)
    trained = {"vae": vae_state["step"], "unet": base["step"]}
    for stage in ("decoder", "text"):
        tuned = load_checkpoint(checkpoint_path(args.work_dir, stage))
        if tuned is not None:
            trained[stage] = tuned["step"]
    for kind in KINDS:
        state = load_checkpoint(checkpoint_path(args.work_dir, f"controlnet-{kind}"))
        target = out / f"toy-world-controlnet-{kind}"
        if state is None:
            print(f"export: no {kind} ControlNet checkpoint; skipped")
            continue
        controlnet = ControlNetModel.from_unet(unet)
        controlnet.load_state_dict(state["ema"][0])
        if target.exists():
            shutil.rmtree(target)
        controlnet.to(torch.float16).save_pretrained(target, safe_serialization=True)
        trained[f"controlnet-{kind}"] = state["step"]
    (folder / "training.json").write_text(json.dumps(trained, indent=2) + "\n")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"export: {out} holds {total / 1e6:.1f} MB; steps {trained}")


# ---- command line -----------------------------------------------------------------------------


def status(work_dir: Path) -> str:
    """Where each stage stands in ``work_dir``: its step and its training time so far."""
    lines = [f"{work_dir}:"]
    for stage in ("vae", "unet", "decoder", "text", *[f"controlnet-{k}" for k in KINDS]):
        state = load_checkpoint(checkpoint_path(work_dir, stage))
        if state is None:
            lines.append(f"  {stage:18s} not started")
        else:
            minutes = state.get("seconds", 0.0) / 60
            note = ""
            if state.get("warm_from"):
                note = f"   (fine-tuned from step {state['warm_from']})"
            elif state.get("imported"):
                note = "   (imported; its time is in the model card)"
            lines.append(f"  {stage:18s} step {state['step']:6d}   {minutes:6.1f} min{note}")
    return "\n".join(lines)


def _default_out() -> Path:
    return Path(__file__).resolve().parents[2] / "resources" / "models"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.toyworld.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "stage",
        choices=("vae", "decoder", "unet", "controlnet", "export", "all", "status", "import",
                 "text"),
    )  # fmt: skip
    parser.add_argument("--kind", choices=KINDS, help="which ControlNet (controlnet stage)")
    parser.add_argument("--steps", type=int, help="train up to this step (default per stage)")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--samples", type=int, default=TRAIN_SAMPLES, help="training images")
    parser.add_argument(
        "--pose-samples",
        type=int,
        default=POSE_SAMPLES,
        help="person images for the pose ControlNet",
    )
    parser.add_argument(
        "--decay-steps",
        type=int,
        default=0,
        help="cool the learning rate down over the last N steps of --steps",
    )
    parser.add_argument(
        "--outline-samples",
        type=int,
        default=0,
        help="canny: add this many outline scenes (outlines.py) to the world's",
    )
    parser.add_argument(
        "--painted-samples",
        type=int,
        default=0,
        help="depth: add this many painted depth scenes (paintings.py) to the world's",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--minutes", type=float, help="stop (and save) after this long")
    parser.add_argument("--crop", type=int, default=32, help="VAE training crop size")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--out", type=Path, default=_default_out(), help="export folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1…")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="bf16 autocast: auto = on CUDA GPUs with bf16 and on CPUs with AMX",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.stage == "status":
        print(status(args.work_dir))
        return
    if args.stage == "import":
        from pipelines.toyworld.tune import import_shipped

        import_shipped(args)
        return
    stages = (
        ["vae", "unet", "decoder", *[f"controlnet-{k}" for k in KINDS], "export"]
        if args.stage == "all"
        else [f"controlnet-{args.kind}" if args.stage == "controlnet" else args.stage]
    )
    if args.stage == "controlnet" and not args.kind:
        parser.error("the controlnet stage needs --kind canny|pose|depth")
    given = dict(steps=args.steps, batch=args.batch, lr=args.lr)
    for stage in stages:
        family = stage.split("-")[0]
        args.stage_name = stage
        if stage.startswith("controlnet-"):
            args.kind = stage.split("-", 1)[1]
        if family != "export":
            args.steps = given["steps"] or DEFAULT_STEPS[family]
            args.batch = given["batch"] or BATCH[family]
            args.lr = given["lr"] or LR[family]
        torch.manual_seed(args.seed)  # a stage started afresh starts from the same weights
        from pipelines.toyworld.tune import train_text

        {"vae": train_vae, "decoder": train_decoder, "unet": train_unet, "controlnet": train_controlnet,
         "export": export, "text": train_text}[family](args)  # fmt: skip


if __name__ == "__main__":
    main()
