"""Stages that start from the shipped weights instead of from scratch.

    python -m pipelines.toyworld.train import        # shipped weights -> checkpoints in --work-dir
    python -m pipelines.toyworld.train text --steps 3000

``import`` turns the weights in ``resources/models`` into the checkpoints the other stages resume
from (the step counts of ``training.json``, no optimizer state: a stage continued from them warms
its learning rate up again). ``text`` teaches the text encoder the ways people say things
(:mod:`pipelines.toyworld.captions`) by distillation: with the UNet frozen, the UNet's prediction
for a paraphrase must match its prediction for the world's own caption through the original text
encoder. The world's own captions keep their hidden states, so the ControlNets trained on them
stay valid.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from pipelines.toyworld import captions, train

PLAIN_SHARE = 0.2  # pairs whose student caption is the world's own: they anchor the old grammar
EMPTY_SHARE = 0.05  # and the empty caption classifier-free guidance uses


def import_shipped(args: argparse.Namespace) -> None:
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(args.out)
    model = folder / "toy-world"
    steps = json.loads((model / "training.json").read_text())

    def state_of(module: torch.nn.Module) -> dict:
        return {k: v.float() for k, v in module.state_dict().items()}

    def write(stage: str, modules: list[dict], step: int, **extra: object) -> None:
        path = train.checkpoint_path(args.work_dir, stage)
        if path.exists():
            print(f"import: {path} exists; kept")
            return
        train.save_checkpoint(path, {"step": step, "modules": modules, "optimizer": None,
                                     "ema": modules, "seconds": 0.0, "imported": str(folder),
                                     **extra})  # fmt: skip
        print(f"import: {stage} at step {step}")

    vae = AutoencoderKL.from_pretrained(model / "vae")
    write("vae", [state_of(vae)], steps["vae"])
    text_encoder = CLIPTextModel.from_pretrained(model / "text_encoder")
    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    write("unet", [state_of(text_encoder), state_of(unet)], steps["unet"],
          scaling_factor=float(vae.config.scaling_factor))  # fmt: skip
    for kind in train.KINDS:
        target = folder / f"toy-world-controlnet-{kind}"
        if target.exists():
            controlnet = ControlNetModel.from_pretrained(target)
            write(f"controlnet-{kind}", [state_of(controlnet)], steps[f"controlnet-{kind}"])
    if "text" in steps:
        write("text", [state_of(text_encoder)], steps["text"])


def text_encoder_for(work_dir: Path) -> torch.nn.Module:
    """The text encoder as exported: the ``text`` stage's when there is one, else the base's."""
    encoder = train.build_text_encoder()
    tuned = train.load_checkpoint(train.checkpoint_path(work_dir, "text"))
    source = tuned["ema"][0] if tuned else train.require(work_dir, "unet")["ema"][0]
    encoder.load_state_dict(source)
    return encoder


def student_captions(rng: random.Random, facts: list, plain: list[str]) -> tuple[list, list]:
    """(student caption, teacher caption) pairs: mostly free paraphrases of the same facts."""
    student, teacher = [], []
    for (things, background), own in zip(facts, plain):
        roll = rng.random()
        if roll < EMPTY_SHARE:
            student.append(""), teacher.append("")
        elif roll < EMPTY_SHARE + PLAIN_SHARE:
            student.append(own), teacher.append(own)
        else:
            student.append(captions.paraphrase(rng, things, background)), teacher.append(own)
    return student, teacher


def train_text(args: argparse.Namespace) -> None:
    device = train._device(args.device)
    base = train.require(args.work_dir, "unet")
    teacher, student, unet = (
        train.build_text_encoder(),
        train.build_text_encoder(),
        train.build_unet(),
    )
    teacher.load_state_dict(base["ema"][0])
    student.load_state_dict(base["ema"][0])
    unet.load_state_dict(base["ema"][1])
    for frozen in (teacher, unet):
        frozen.to(device).eval().requires_grad_(False)
    student.to(device)
    state = train.load_checkpoint(train.checkpoint_path(args.work_dir, "text"))
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=1e-2)
    ema = train.Ema([student], decay=0.998)
    if state:
        student.load_state_dict(state["modules"][0])
        train._load_optimizer(optimizer, state)
        ema.shadow = state["ema"]
    vae = train._frozen_vae(args, device)
    data = train.build_dataset(args.samples)
    moments = train._latents(args, vae, device, "train", data)
    del vae
    scaling = base["scaling_factor"]
    tok = train.tokenizer()
    scheduler, _ = train._noise_schedule()

    def step_fn(generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, len(moments), (args.batch,), generator=generator)
        rng = random.Random(int(torch.randint(0, 2**31, (1,), generator=generator)))
        said, own = student_captions(
            rng, [data["facts"][i] for i in index], [data["captions"][i] for i in index]
        )
        latents = train._sample_latents(moments[index], generator) * scaling
        noise, timesteps = train._noise(latents, generator)
        noisy = scheduler.add_noise(latents, noise, timesteps).to(device)
        timesteps = timesteps.to(device)
        with torch.no_grad():
            target_hidden = teacher(train.tokenize(tok, own).to(device))[0]
            target = unet(noisy, timesteps, target_hidden).sample
        hidden = student(train.tokenize(tok, said).to(device))[0]
        prediction = unet(noisy, timesteps, hidden).sample
        same = torch.tensor([a == b for a, b in zip(said, own)], device=device)
        # Where the caption is the world's own, its hidden states stay put: the ControlNets
        # were trained on them.
        anchor = F.mse_loss(hidden[same], target_hidden[same]) if same.any() else hidden.sum() * 0
        return F.mse_loss(prediction.float(), target.float()) + anchor

    student.train()
    train._loop(args, state, [student], optimizer, ema, step_fn, lambda: {})


# ---- canny ControlNet data: outlines the caption does not describe ----------------------------


def world_caption(rng: random.Random, facts: tuple, own: str) -> str:
    """A world sample's caption for the canny ControlNet: its own words, a paraphrase, or (for
    shapes) right colours with a wrong shape, size and place, which the map must overrule."""
    from pipelines.toyworld import world

    things, background = facts
    roll = rng.random()
    if roll < 0.4:
        return own
    if roll < 0.7 or things[0].noun not in world.SHAPES:
        return captions.paraphrase(rng, things, background)
    wrong = [captions.Thing(rng.choice(world.SHAPES), t.colour, rng.choice(list(world.SIZES)),
                            rng.choice(list(world.POSITIONS))) for t in things]  # fmt: skip
    if rng.random() < 0.5:
        return captions.plain_caption(wrong, background)
    return captions.paraphrase(rng, wrong, background)


def add_outlines(
    args: argparse.Namespace, vae: torch.nn.Module, device: torch.device, data: dict,
    moments: torch.Tensor,
) -> tuple[dict, torch.Tensor]:  # fmt: skip
    """The world's canny data followed by ``args.outline_samples`` outline scenes, with a
    ``recaption(rng, index)`` that words each caption afresh at every step."""
    from tqdm import tqdm

    from pipelines.toyworld import outlines

    images, conds, colours = [], [], []
    for seed in tqdm(range(args.outline_samples), desc="outline samples", leave=False):
        sample = outlines.make_outline_sample(seed)
        images.append(train._to_tensor(sample.image))
        conds.append(train._to_tensor(sample.canny))
        colours.append((sample.colour, sample.background))
    extra = {"images": torch.stack(images), "captions": [""] * len(images)}
    vae_step = train.require(args.work_dir, "vae")["step"]
    path = args.work_dir / (
        f"latents-outlines-{len(images)}-vae{vae_step}-{outlines.fingerprint()}.pt"
    )
    if path.exists():
        extra_moments = torch.load(path)
    else:
        extra_moments = train.encode(vae, extra["images"], device)
        train.save_checkpoint(path, extra_moments)
    world_count = len(data["captions"])

    def recaption(rng: random.Random, index: torch.Tensor) -> list[str]:
        said = []
        for i in index.tolist():
            if i < world_count:
                said.append(world_caption(rng, data["facts"][i], data["captions"][i]))
            else:
                colour, background = colours[i - world_count]
                said.append(outlines.outline_caption(rng, colour, background))
        return said

    joined = {
        "captions": data["captions"] + extra["captions"],
        "canny": torch.cat([data["canny"], torch.stack(conds)]),
        "recaption": recaption,
    }
    return joined, torch.cat([moments, extra_moments])
