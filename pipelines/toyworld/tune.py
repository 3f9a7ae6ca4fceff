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
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from pipelines.toyworld import base, captions, world

# The caption decides colours and layout at the noisy end of sampling; at the clean end the
# prediction hardly depends on it and only adds noise to the distillation's gradients.
TEXT_TIMESTEPS = (300, 1000)
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
        path = base.checkpoint_path(args.work_dir, stage)
        if path.exists():
            print(f"import: {path} exists; kept")
            return
        base.save_checkpoint(path, {"step": step, "modules": modules, "optimizer": None,
                                     "ema": modules, "seconds": 0.0, "imported": str(folder),
                                     **extra})  # fmt: skip
        print(f"import: {stage} at step {step}")

    vae = AutoencoderKL.from_pretrained(model / "vae")
    write("vae", [state_of(vae)], steps["vae"])
    if "decoder" in steps:  # the shipped VAE already has it; kept for the step count
        decoder = torch.nn.ModuleList([vae.post_quant_conv, vae.decoder])
        write("decoder", [state_of(decoder)], steps["decoder"])
    text_encoder = CLIPTextModel.from_pretrained(model / "text_encoder")
    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    write("unet", [state_of(text_encoder), state_of(unet)], steps["unet"],
          scaling_factor=float(vae.config.scaling_factor))  # fmt: skip
    for kind in base.KINDS:
        target = folder / f"toy-world-controlnet-{kind}"
        if target.exists():
            controlnet = ControlNetModel.from_pretrained(target)
            write(f"controlnet-{kind}", [state_of(controlnet)], steps[f"controlnet-{kind}"])
    if "text" in steps:
        write("text", [state_of(text_encoder)], steps["text"])


def text_encoder_for(work_dir: Path) -> torch.nn.Module:
    """The text encoder as exported: the ``text`` stage's when there is one, else the base's."""
    encoder = base.build_text_encoder()
    tuned = base.load_checkpoint(base.checkpoint_path(work_dir, "text"))
    source = tuned["ema"][0] if tuned else base.require(work_dir, "unet")["ema"][0]
    encoder.load_state_dict(source)
    return encoder


@torch.no_grad()
def tie_synonyms(encoder: torch.nn.Module, tok: object) -> int:
    """Start each synonym's token embedding at its world word's (captions.word_ties): "a big
    crimson circle" then reads as "a large red circle" before any training. Returns how many
    token embeddings were set."""
    table = encoder.get_input_embeddings().weight
    world_tokens = {
        t
        for name in captions.SYNONYMS
        for w in name.split()
        for t in tok(w, add_special_tokens=False).input_ids
    }
    count = 0
    for word, name in captions.word_ties().items():
        target = tok(name, add_special_tokens=False).input_ids
        for token in tok(word, add_special_tokens=False).input_ids:
            if token not in world_tokens:
                table[token] = table[target].mean(dim=0)
                count += 1
    return count


def student_captions(
    rng: random.Random, facts: list, plain: list[str], fillers: list[str] | None = None
) -> tuple[list, list]:
    """(student caption, teacher caption) pairs: mostly free paraphrases of the same facts;
    with ``fillers`` (:func:`captions.filler_pool`), some paraphrases also get words the world
    does not know."""
    student, teacher = [], []
    for (things, background), own in zip(facts, plain):
        roll = rng.random()
        if roll < EMPTY_SHARE:
            student.append(""), teacher.append("")
        elif roll < EMPTY_SHARE + PLAIN_SHARE:
            student.append(own), teacher.append(own)
        else:
            said = captions.paraphrase(rng, things, background)
            if fillers and rng.random() < captions.FILLER_SHARE:
                said = captions.add_fillers(rng, said, fillers)
            student.append(said), teacher.append(own)
    return student, teacher


def train_text(args: argparse.Namespace) -> None:
    device = base._device(args.device)
    unet_stage = base.require(args.work_dir, "unet")
    teacher, student, unet = (
        base.build_text_encoder(),
        base.build_text_encoder(),
        base.build_unet(),
    )
    teacher.load_state_dict(unet_stage["ema"][0])
    student.load_state_dict(unet_stage["ema"][0])
    tok = base.tokenizer()
    tied = tie_synonyms(student, tok)  # a resumed run loads its own weights over these below
    unet.load_state_dict(unet_stage["ema"][1])
    for frozen in (teacher, unet):
        frozen.to(device).eval().requires_grad_(False)
    student.to(device)
    state = base.load_checkpoint(base.checkpoint_path(args.work_dir, "text"))
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=1e-2)
    ema = base.Ema([student], decay=0.99)  # a short run: a long average would lag behind
    if state:
        student.load_state_dict(state["modules"][0])
        base._load_optimizer(optimizer, state)
        ema.shadow = state["ema"]
    vae = base._frozen_vae(args, device)
    data = base.build_dataset(args.samples)
    moments = base._latents(args, vae, device, "train", data)
    del vae
    scaling = unet_stage["scaling_factor"]
    scheduler, _ = base._noise_schedule()
    print(f"text: {tied} synonym embeddings start at their world word's")
    fillers = captions.filler_pool(tok.get_vocab()) if args.fillers else None

    def step_fn(generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, len(moments), (args.batch,), generator=generator)
        rng = random.Random(int(torch.randint(0, 2**31, (1,), generator=generator)))
        said, own = student_captions(
            rng, [data["facts"][i] for i in index], [data["captions"][i] for i in index], fillers
        )
        latents = base._sample_latents(moments[index], generator) * scaling
        noise, _ = base._noise(latents, generator)
        timesteps = torch.randint(*TEXT_TIMESTEPS, (len(latents),), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps).to(device)
        timesteps = timesteps.to(device)
        with torch.no_grad():
            target_hidden = teacher(base.tokenize(tok, own).to(device))[0]
            target = unet(noisy, timesteps, target_hidden).sample
        hidden = student(base.tokenize(tok, said).to(device))[0]
        prediction = unet(noisy, timesteps, hidden).sample
        same = torch.tensor([a == b for a, b in zip(said, own)], device=device)
        # Where the caption is the world's own, its hidden states stay put: the ControlNets
        # were trained on them.
        anchor = F.mse_loss(hidden[same], target_hidden[same]) if same.any() else hidden.sum() * 0
        return F.mse_loss(prediction.float(), target.float()) + anchor

    student.train()
    base._loop(args, state, [student], optimizer, ema, step_fn, lambda: {})


# ---- canny ControlNet data: outlines the caption does not describe ----------------------------


def world_caption(rng: random.Random, facts: tuple, own: str) -> str:
    """A world sample's caption for the canny ControlNet: its own words, a paraphrase, or (for
    shapes) right colours with a wrong shape, size and place, which the map must overrule."""
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
    """The world's canny data followed by ``args.outline_samples`` outline scenes."""
    from pipelines.toyworld import outlines

    return _add_scenes(args, vae, device, data, moments, "canny", "outlines",
                       outlines.make_outline_sample, args.outline_samples, outlines.fingerprint(),
                       lambda rng, s: outlines.outline_caption(rng, s[0], s[1]))  # fmt: skip


def add_paintings(
    args: argparse.Namespace, vae: torch.nn.Module, device: torch.device, data: dict,
    moments: torch.Tensor,
) -> tuple[dict, torch.Tensor]:  # fmt: skip
    """The world's depth data followed by ``args.painted_samples`` painted depth scenes."""
    from pipelines.toyworld import paintings

    def caption(rng: random.Random, said: tuple[str, str]) -> str:
        thing = captions.Thing(rng.choice(("shape", *world.SOLIDS)), said[0])
        return captions.paraphrase(rng, [thing], said[1])

    return _add_scenes(args, vae, device, data, moments, "depth", "paintings",
                       paintings.make_depth_sample, args.painted_samples,
                       paintings.fingerprint(), caption)  # fmt: skip


def _add_scenes(
    args: argparse.Namespace,
    vae: torch.nn.Module,
    device: torch.device,
    data: dict,
    moments: torch.Tensor,
    kind: str,
    name: str,
    make: Callable[[int], object],
    count: int,
    fingerprint: str,
    caption: Callable[[random.Random, tuple[str, str]], str],
) -> tuple[dict, torch.Tensor]:
    """``data`` followed by ``count`` scenes from ``make(seed)``, with a ``recaption(rng,
    index)`` that words each caption afresh at every step."""
    from tqdm import tqdm

    images, conds, colours = [], [], []
    for seed in tqdm(range(count), desc=f"{name} samples", leave=False):
        sample = make(seed)
        images.append(base._to_tensor(sample.image))
        conds.append(base._to_tensor(getattr(sample, kind)))
        colours.append((sample.colour, sample.background))
    stacked = torch.stack(images)
    vae_step = base.require(args.work_dir, "vae")["step"]
    path = args.work_dir / f"latents-{name}-{count}-vae{vae_step}-{fingerprint}.pt"
    if path.exists():
        extra_moments = torch.load(path)
    else:
        extra_moments = base.encode(vae, stacked, device)
        base.save_checkpoint(path, extra_moments)
    world_count = len(data["captions"])

    def recaption(rng: random.Random, index: torch.Tensor) -> list[str]:
        said = []
        for i in index.tolist():
            if i < world_count:
                said.append(world_caption(rng, data["facts"][i], data["captions"][i]))
            else:
                said.append(caption(rng, colours[i - world_count]))
        return said

    joined = {
        "captions": data["captions"] + [""] * count,
        kind: torch.cat([data[kind], torch.stack(conds)]),
        "recaption": recaption,
    }
    return joined, torch.cat([moments, extra_moments])
