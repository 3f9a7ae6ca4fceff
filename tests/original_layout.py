"""Write tiny diffusers models in the original (LDM / CompVis) single-file layout.

Real checkpoints from other UIs use this layout; writing the tiny test models in it makes the tests
run the same single-file conversion code that user files go through. The mapping is the inverse of
the conversion in diffusers' ``loaders/single_file_utils.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CONTROL_PREFIX = "control_model."

_RESNET_RENAMES = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}
_VAE_TOP = {
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_norm_out": "decoder.norm_out",
}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors weights in {folder}")
    return load_file(files[0])


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _split(key: str) -> tuple[str, str]:
    module, _, param = key.rpartition(".")
    return module, param


def _resnet(rest: str) -> str:
    for new, old in _RESNET_RENAMES:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def _unet_key(key: str, layers: int, attention_blocks: set[int]) -> str:
    """One diffusers UNet / ControlNet key in LDM naming (without prefix)."""
    module, param = _split(key)
    if module in _UNET_TOP:
        return f"{_UNET_TOP[module]}.{param}"
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        first = 1 + block * (layers + 1)
        if kind == "resnets":
            return f"input_blocks.{first + index}.0.{_resnet(rest)}"
        if kind == "attentions":
            return f"input_blocks.{first + index}.1.{rest}"
        if kind == "downsamplers":  # rest: conv.weight
            return f"input_blocks.{first + layers}.0.op.{rest.removeprefix('conv.')}"
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * index}.{_resnet(rest)}"
        return f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        first = block * (layers + 1)
        if kind == "resnets":
            return f"output_blocks.{first + index}.0.{_resnet(rest)}"
        if kind == "attentions":
            return f"output_blocks.{first + index}.1.{rest}"
        if kind == "upsamplers":
            slot = 2 if block in attention_blocks else 1
            return f"output_blocks.{first + layers}.{slot}.{rest}"
    raise KeyError(f"no LDM name for UNet key {key}")


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    layers = config["layers_per_block"]
    attention_blocks = {
        int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k
    }
    return {
        UNET_PREFIX + _unet_key(k, layers, attention_blocks): v.contiguous()
        for k, v in state.items()
    }


def _vae_key(key: str, up_count: int) -> str:
    module, param = _split(key)
    if module in _VAE_TOP:
        return f"{_VAE_TOP[module]}.{param}"
    parts = key.split(".")
    coder = parts[0]
    if len(parts) > 2 and parts[1] in ("down_blocks", "up_blocks"):
        index = int(parts[2])
        name = "down" if parts[1] == "down_blocks" else "up"
        level = index if name == "down" else up_count - 1 - index
        kind, rest = parts[3], ".".join(parts[4:])
        if kind == "resnets":
            sub, tail = rest.split(".", 1)
            tail = tail.replace("conv_shortcut", "nin_shortcut")
            return f"{coder}.{name}.{level}.block.{sub}.{tail}"
        sampler = "downsample" if name == "down" else "upsample"
        return f"{coder}.{name}.{level}.{sampler}.{rest.split('.', 1)[1]}"  # drop the "0."
    if len(parts) > 2 and parts[1] == "mid_block":
        kind, index, rest = parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "resnets":
            return f"{coder}.mid.block_{index + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
        sub, tail = rest.rsplit(".", 1)
        return f"{coder}.mid.attn_1.{_VAE_ATTENTION[sub]}.{tail}"
    return key  # conv_in, conv_out, quant_conv, post_quant_conv keep their names


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    up_count = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        new = _vae_key(key, up_count)
        # The original attention projections are 1x1 convolutions.
        if ".mid.attn_1." in new and new.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[VAE_PREFIX + new] = value.contiguous()
    return out


def _flat_text_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # transformers >= 5.6 flattens CLIPTextModel (no "text_model." prefix); accept either form.
    return {k.removeprefix("text_model."): v for k, v in model_state.items()}


def clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    flat = _flat_text_state(state)
    return {f"{prefix}text_model.{k}": v.contiguous() for k, v in flat.items()}


def open_clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    flat = _flat_text_state(state)
    out: dict[str, torch.Tensor] = {}
    fixed = {
        "embeddings.token_embedding.weight": "token_embedding.weight",
        "embeddings.position_embedding.weight": "positional_embedding",
        "final_layer_norm.weight": "ln_final.weight",
        "final_layer_norm.bias": "ln_final.bias",
    }
    for key, value in flat.items():
        if key in fixed:
            out[prefix + fixed[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
    layers = {int(k.split(".")[2]) for k in flat if k.startswith("encoder.layers.")}
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for param in ("weight", "bias"):
            out[dst + f"attn.in_proj_{param}"] = torch.cat(
                [flat[src + f"self_attn.{p}_proj.{param}"] for p in ("q", "k", "v")]
            )
            out[dst + f"attn.out_proj.{param}"] = flat[src + f"self_attn.out_proj.{param}"]
            out[dst + f"ln_1.{param}"] = flat[src + f"layer_norm1.{param}"]
            out[dst + f"ln_2.{param}"] = flat[src + f"layer_norm2.{param}"]
            out[dst + f"mlp.c_fc.{param}"] = flat[src + f"mlp.fc1.{param}"]
            out[dst + f"mlp.c_proj.{param}"] = flat[src + f"mlp.fc2.{param}"]
    return {k: v.contiguous() for k, v in out.items()}


def _pipeline_parts(folder: Path) -> dict[str, torch.Tensor]:
    unet = unet_to_ldm(_weights(folder / "unet"), _config(folder / "unet"))
    vae = vae_to_ldm(_weights(folder / "vae"), _config(folder / "vae"))
    return {**unet, **vae}


def write_sd1_single_file(diffusers_folder: Path, out_path: Path) -> Path:
    folder = Path(diffusers_folder)
    state = _pipeline_parts(folder)
    state.update(clip_to_ldm(_weights(folder / "text_encoder"), "cond_stage_model.transformer."))
    save_file(state, str(out_path))
    return Path(out_path)


def write_sdxl_single_file(diffusers_folder: Path, out_path: Path) -> Path:
    folder = Path(diffusers_folder)
    state = _pipeline_parts(folder)
    state.update(
        clip_to_ldm(_weights(folder / "text_encoder"), "conditioner.embedders.0.transformer.")
    )
    state.update(
        open_clip_to_ldm(_weights(folder / "text_encoder_2"), "conditioner.embedders.1.model.")
    )
    save_file(state, str(out_path))
    return Path(out_path)


def controlnet_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    layers = config["layers_per_block"]
    blocks = len(
        {k.split(".")[2] for k in state if k.startswith("controlnet_cond_embedding.blocks.")}
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, param = _split(key)
        parts = key.split(".")
        if module == "controlnet_cond_embedding.conv_in":
            new = f"input_hint_block.0.{param}"
        elif module == "controlnet_cond_embedding.conv_out":
            new = f"input_hint_block.{2 * (blocks + 1)}.{param}"
        elif module.startswith("controlnet_cond_embedding.blocks."):
            new = f"input_hint_block.{2 * (int(parts[2]) + 1)}.{param}"
        elif parts[0] == "controlnet_down_blocks":
            new = f"zero_convs.{parts[1]}.0.{param}"
        elif module == "controlnet_mid_block":
            new = f"middle_block_out.0.{param}"
        else:
            new = _unet_key(key, layers, set())
        out[CONTROL_PREFIX + new] = value.contiguous()
    return out


def write_controlnet_single_file(
    controlnet_folder: Path, out_path: Path, layout: str = "ldm"
) -> Path:
    """``layout="ldm"``: ``control_model.*`` keys (SD 1.x files); ``"diffusers"``: the diffusers
    key names in one file, which is how SDXL ControlNets are usually distributed."""
    folder = Path(controlnet_folder)
    state = _weights(folder)
    if layout == "ldm":
        state = controlnet_to_ldm(state, _config(folder))
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_path))
    return Path(out_path)
