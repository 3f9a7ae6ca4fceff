"""Train the bundled toy-world model, stage by stage, resumably, then export it.

    python -m pipelines.toyworld.train vae --steps 600
    python -m pipelines.toyworld.train unet --steps 6000
    python -m pipelines.toyworld.train text --steps 1000  # synonyms, word order (tune.py)
    python -m pipelines.toyworld.train controlnet --kind canny --steps 1500   # pose, depth
    python -m pipelines.toyworld.train import            # continue from the shipped weights
    python -m pipelines.toyworld.train export            # fp16 safetensors into resources/models
    python -m pipelines.toyworld.train all                # every stage with the default steps
    python -m pipelines.toyworld.train status             # each stage's step and time so far

Every stage keeps a checkpoint in ``--work-dir`` (saved every ``--save-every`` steps and at the
end) and resumes from it: run the same command again, or with a larger ``--steps``, to continue.
Batches and noise are drawn from generators seeded by ``--seed`` and the step number, so a run
split over several sittings sees the same data as one run. A CUDA GPU is used when present;
bf16 autocast where it is faster (``--precision``). ``--outline-samples`` and
``--painted-samples`` add the scenes of outlines.py and paintings.py to the canny and depth
ControlNets' data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from pipelines.toyworld import tune, world
from pipelines.toyworld.base import (  # noqa: F401 (re-exported: the stages' and tests' names)
    BATCH,
    CAPTION_DROPOUT,
    DEFAULT_STEPS,
    DEFAULT_WORK_DIR,
    HELD_OUT_SEED_BASE,
    KINDS,
    LR,
    POSE_SAMPLES,
    POSE_SEED_BASE,
    SHAPE_SEED_BASE,
    TRAIN_SAMPLES,
    Ema,
    _device,
    _diffusion_loss,
    _frozen_vae,
    _latents,
    _load_optimizer,
    _loop,
    _lr,
    _noise,
    _noise_schedule,
    _sample_latents,
    _to_tensor,
    build_dataset,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
    checkpoint_path,
    encode,
    foreground_cells,
    load_checkpoint,
    psnr,
    require,
    save_checkpoint,
    to_model_range,
    tokenize,
    tokenizer,
    trained_vae,
)


def _world_and_shapes(
    args: argparse.Namespace, vae: torch.nn.Module, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The latents' moments, the images and the captions of the world's ``--samples`` training
    scenes, followed by ``--shape-samples`` shape scenes (one or two shapes each) when asked."""
    data = build_dataset(args.samples)
    moments = _latents(args, vae, device, "train", data)
    images, captions = data["images"], data["captions"]
    if args.shape_samples:
        shapes = build_dataset(args.shape_samples, seed_base=SHAPE_SEED_BASE, kind="shapes")
        moments = torch.cat([moments, _latents(args, vae, device, "shapes", shapes)])
        images = torch.cat([images, shapes["images"]])
        captions = captions + shapes["captions"]
    return moments, images, captions


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
    # With --shape-samples, more small single shapes, whose corners a blurry decoder loses.
    moments, images, _ = _world_and_shapes(args, vae, device)

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


def train_unet(args: argparse.Namespace) -> None:
    device = _device(args.device)
    vae = _frozen_vae(args, device)
    tok = tokenizer()
    text_encoder, unet = build_text_encoder().to(device), build_unet().to(device)
    modules = [text_encoder, unet]
    state = load_checkpoint(checkpoint_path(args.work_dir, "unet"))
    if state:
        for m, s in zip(modules, state["modules"]):
            m.load_state_dict(s)
    if args.freeze_text:
        # Fine-tuning the UNet alone under the text encoder that ships (the text stage's when
        # there is one): the ControlNets and the distilled wording stay matched to it.
        text_encoder.load_state_dict(tune.text_encoder_for(args.work_dir).state_dict())
        text_encoder.eval().requires_grad_(False)
    trained = [unet] if args.freeze_text else modules
    params = [p for m in trained for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    ema = Ema(modules, decay=args.ema_decay)
    if state:
        _load_optimizer(optimizer, state)
        ema.shadow = state["ema"]
        if args.freeze_text:
            ema.shadow[0] = {k: v.clone() for k, v in text_encoder.state_dict().items()}
    # With --shape-samples, more single and double shapes, for crisper outlines.
    moments, images, captions = _world_and_shapes(args, vae, device)
    world_moments = moments[: args.samples, :4]  # the latents' scale: the world's scenes alone
    scaling = state["scaling_factor"] if state else float(1.0 / world_moments.std())
    cells = foreground_cells(images, moments.shape[-1], args.focus) if args.focus else None
    ids = tokenize(tok, captions)
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
        weights = None if cells is None else cells[index]
        return _diffusion_loss(prediction, noise.to(device), timesteps, alphas_cumprod, weights)

    if not args.freeze_text:
        text_encoder.train()
    unet.train()
    _loop(args, state, modules, optimizer, ema, step_fn,
          lambda: {"scaling_factor": scaling})  # fmt: skip


def train_controlnet(args: argparse.Namespace) -> None:
    from diffusers import ControlNetModel

    device = _device(args.device)
    kind = args.kind
    base = require(args.work_dir, "unet")
    text_encoder, unet = tune.text_encoder_for(args.work_dir), build_unet()
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
        data, moments = tune.add_outlines(args, vae, device, data, moments)
    if kind == "depth" and args.painted_samples:
        data, moments = tune.add_paintings(args, vae, device, data, moments)
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
    text_encoder = tune.text_encoder_for(args.work_dir)
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
    parser.add_argument(
        "--shape-samples",
        type=int,
        default=0,
        help=f"unet, decoder: add this many shape scenes (seeds from {SHAPE_SEED_BASE:,}) to the world's",
    )
    parser.add_argument(
        "--freeze-text",
        action="store_true",
        help="unet: train the UNet alone, under the shipped (distilled) text encoder",
    )
    parser.add_argument(
        "--fillers",
        action="store_true",
        help="text: put words the world does not know into some paraphrases (captions.py)",
    )
    parser.add_argument(
        "--focus",
        type=float,
        default=0.0,
        help="unet: weigh the latent cells a shape covers 1 + this much in the loss",
    )
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=0.999,
        help="unet: how slowly the exported weight average follows training (0.999 averages "
        "over about 1,000 steps; the decay is capped at (1 + step) / (10 + step), so 0.9999 "
        "gives about 0.9998, 5,000 steps, at step 45,000)",
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
        tune.import_shipped(args)
        return
    stages = (
        ["vae", "unet", "decoder", "text", *[f"controlnet-{k}" for k in KINDS], "export"]
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
        {"vae": train_vae, "decoder": train_decoder, "unet": train_unet, "controlnet": train_controlnet,
         "export": export, "text": tune.train_text}[family](args)  # fmt: skip


if __name__ == "__main__":
    main()
