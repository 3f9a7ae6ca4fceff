"""Tiny SD 3-shaped and Flux-shaped pipelines with the real architectures and random weights.

Saved as diffusers folders, as SD 3 all-in-one files and as transformer-only files with their
companions in ComfyUI's layout, so the tests exercise the loaders users' files go through. Attention
heads keep the real widths (64 for SD 3 and CLIP, 128 for Flux): single files do not store the head
count, the loader derives it from those widths. The T5 tokenizer is trained here with sentencepiece.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from tests.tiny_models import _text_config
from tests.tiny_models import _tokenizer as _clip_tokenizer

LATENT_SIZE = 8  # 64 px images
T5_WIDTH = 256
CLIP_L_WIDTH = 64
CLIP_G_WIDTH = 128
_WORDS = (
    "a photo of cat dog red blue green house tree sky over the under big small bright dark "
    "painting city night river mountain"
).split()


def train_t5_tokenizer(folder: Path, with_json: bool = True) -> Path:
    """A unigram sentencepiece model as spiece.model (and, with_json, tokenizer.json) in folder."""
    import sentencepiece

    rng = random.Random(0)
    lines = [" ".join(rng.choice(_WORDS) for _ in range(8)) for _ in range(300)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=48,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    if with_json:
        t5_tokenizer(folder).save_pretrained(folder)
    return folder


def t5_tokenizer(folder: Path) -> T5Tokenizer:
    from pipelines.flow_companions import load_t5_tokenizer

    return load_t5_tokenizer(folder)


def _clip_config(width: int, projection: bool = True) -> CLIPTextConfig:
    config = _text_config(projection=width if projection else None, width=width)
    config.num_attention_heads = width // 64  # the real head width, which single files assume
    # OpenAI's CLIP-L uses quick GELU, OpenCLIP bigG plain GELU: the shipped configs say so.
    config.hidden_act = "quick_gelu" if width == CLIP_L_WIDTH else "gelu"
    return config


def _t5(vocab_size: int) -> T5EncoderModel:
    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=T5_WIDTH,
            d_kv=32,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=32,
            relative_attention_max_distance=128,
            dense_act_fn="gelu_new",
            is_encoder_decoder=False,
        )
    )


def _vae(scaling: float, shift: float) -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(32, 32, 32, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=16,
        norm_num_groups=32,
        layers_per_block=1,
        sample_size=LATENT_SIZE * 8,
        scaling_factor=scaling,
        shift_factor=shift,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


# The transformers' sizes, shared by their ControlNets (which differ in depth only).
SD3_SIZES = dict(
    sample_size=LATENT_SIZE,
    patch_size=2,
    in_channels=16,
    attention_head_dim=64,
    num_attention_heads=2,
    joint_attention_dim=T5_WIDTH,
    caption_projection_dim=128,
    pooled_projection_dim=CLIP_L_WIDTH + CLIP_G_WIDTH,
    out_channels=16,
    pos_embed_max_size=16,
)
FLUX_SIZES = dict(
    patch_size=1,
    in_channels=64,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=128,
    num_attention_heads=1,
    joint_attention_dim=T5_WIDTH,
    pooled_projection_dim=CLIP_L_WIDTH,
    axes_dims_rope=(16, 56, 56),
)


def sd3_transformer() -> SD3Transformer2DModel:
    return SD3Transformer2DModel(num_layers=2, **SD3_SIZES)


def flux_transformer(guidance: bool = True) -> FluxTransformer2DModel:
    return FluxTransformer2DModel(guidance_embeds=guidance, **FLUX_SIZES)


def _evaluating(pipe: object) -> object:
    # Built modules start in training mode (T5's dropout active); loaded ones are in eval mode.
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def build_sd3_pipeline(tokenizer_folder: Path, seed: int = 0) -> StableDiffusion3Pipeline:
    torch.manual_seed(seed)
    tokenizer_3 = t5_tokenizer(tokenizer_folder)
    return _evaluating(
        StableDiffusion3Pipeline(
            transformer=sd3_transformer(),
            vae=_vae(1.5305, 0.0609),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            text_encoder=CLIPTextModelWithProjection(_clip_config(CLIP_L_WIDTH)),
            tokenizer=_clip_tokenizer(),
            text_encoder_2=CLIPTextModelWithProjection(_clip_config(CLIP_G_WIDTH)),
            tokenizer_2=_clip_tokenizer(pad_exclaim=True),
            text_encoder_3=_t5(len(tokenizer_3)),
            tokenizer_3=tokenizer_3,
        )
    )


def build_flux_pipeline(tokenizer_folder: Path, dev: bool = True, seed: int = 0) -> FluxPipeline:
    torch.manual_seed(seed)
    tokenizer_2 = t5_tokenizer(tokenizer_folder)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0 if dev else 1.0, use_dynamic_shifting=dev, base_shift=0.5, max_shift=1.15
    )
    return _evaluating(
        FluxPipeline(
            transformer=flux_transformer(guidance=dev),
            vae=_vae(0.3611, 0.1159),
            scheduler=scheduler,
            text_encoder=CLIPTextModel(_clip_config(CLIP_L_WIDTH, projection=False)),
            tokenizer=_clip_tokenizer(),
            text_encoder_2=_t5(len(tokenizer_2)),
            tokenizer_2=tokenizer_2,
        )
    )


def save_pipeline(pipe: object, folder: Path) -> Path:  # a pipeline or one model
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _prefixed(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # T5 ties its embedding to the encoder's: released files hold each tensor once, as a copy.
    return {prefix + k: v.clone().contiguous() for k, v in module.state_dict().items()}


def write_sd3_all_in_one(pipe: StableDiffusion3Pipeline, path: Path, t5: bool = True) -> Path:
    """The layout of sd3.5_*.safetensors with text encoders: everything under its prefix."""
    tensors = {
        **_prefixed("model.diffusion_model.", pipe.transformer),
        **_prefixed("first_stage_model.", pipe.vae),
        **_prefixed("text_encoders.clip_l.transformer.", pipe.text_encoder),
        **_prefixed("text_encoders.clip_g.transformer.", pipe.text_encoder_2),
    }
    if t5:
        tensors.update(_prefixed("text_encoders.t5xxl.transformer.", pipe.text_encoder_3))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path)
    return path


def write_comfy_flux(pipe: FluxPipeline, root: Path, name: str = "flux-tiny") -> Path:
    """ComfyUI's layout: models/unet/NAME.safetensors, models/text_encoders/{clip_l,t5xxl_fp16}
    and models/vae/ae.safetensors. The transformer file keeps ComfyUI's key prefix."""
    models = root / "models"
    for sub in ("unet", "text_encoders", "vae"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    path = models / "unet" / f"{name}.safetensors"
    save_file(_prefixed("model.diffusion_model.", pipe.transformer), path)
    save_file(_prefixed("", pipe.text_encoder), models / "text_encoders" / "clip_l.safetensors")
    save_file(
        _prefixed("", pipe.text_encoder_2), models / "text_encoders" / "t5xxl_fp16.safetensors"
    )
    save_file(_prefixed("", pipe.vae), models / "vae" / "ae.safetensors")
    return path


def _visible(*modules: torch.nn.Module) -> None:
    # ControlNets start with zeroed output layers (training starts from "no effect"); random
    # values make a tiny one change the image.
    with torch.no_grad():
        for module in modules:
            for parameter in module.parameters():
                parameter.normal_(0, 0.3)


def build_sd3_controlnet(seed: int = 1) -> torch.nn.Module:
    from diffusers import SD3ControlNetModel

    torch.manual_seed(seed)
    controlnet = SD3ControlNetModel(num_layers=1, **SD3_SIZES)
    _visible(controlnet.controlnet_blocks, controlnet.pos_embed_input)
    return controlnet


def build_flux_controlnet(union: bool = False, seed: int = 2) -> torch.nn.Module:
    from diffusers import FluxControlNetModel

    torch.manual_seed(seed)
    controlnet = FluxControlNetModel(
        guidance_embeds=True, num_mode=10 if union else None, **FLUX_SIZES
    )
    _visible(
        controlnet.controlnet_blocks,
        controlnet.controlnet_single_blocks,
        controlnet.controlnet_x_embedder,
    )
    return controlnet


def write_gguf_transformer(transformer: torch.nn.Module, path: Path) -> Path:
    """The transformer as a GGUF file: 2-D weights quantized to Q8_0 where their rows allow,
    everything else in F32, as city96's Flux GGUF files are laid out."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="flux")
    for name, tensor in transformer.state_dict().items():
        array = tensor.detach().float().numpy()
        if array.ndim == 2 and array.shape[1] % 32 == 0:
            quantized = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def flux_original_layout(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The transformer's weights under Black Forest Labs' names (flux1-dev.safetensors), the
    inverse of diffusers' conversion: fused q/k/v, modulation names, shift/scale order."""
    state = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    out: dict[str, torch.Tensor] = {}

    def move(original: str, ours: str) -> None:
        for kind in ("weight", "bias"):
            out[f"{original}.{kind}"] = state.pop(f"{ours}.{kind}")

    def fuse(original: str, *ours: str) -> None:
        for kind in ("weight", "bias"):
            out[f"{original}.{kind}"] = torch.cat([state.pop(f"{o}.{kind}") for o in ours])

    embedder = "time_text_embed"
    move("time_in.in_layer", f"{embedder}.timestep_embedder.linear_1")
    move("time_in.out_layer", f"{embedder}.timestep_embedder.linear_2")
    move("vector_in.in_layer", f"{embedder}.text_embedder.linear_1")
    move("vector_in.out_layer", f"{embedder}.text_embedder.linear_2")
    if f"{embedder}.guidance_embedder.linear_1.weight" in state:
        move("guidance_in.in_layer", f"{embedder}.guidance_embedder.linear_1")
        move("guidance_in.out_layer", f"{embedder}.guidance_embedder.linear_2")
    move("txt_in", "context_embedder")
    move("img_in", "x_embedder")
    for i in range(transformer.config.num_layers):
        ours, theirs = f"transformer_blocks.{i}", f"double_blocks.{i}"
        move(f"{theirs}.img_mod.lin", f"{ours}.norm1.linear")
        move(f"{theirs}.txt_mod.lin", f"{ours}.norm1_context.linear")
        fuse(f"{theirs}.img_attn.qkv", *(f"{ours}.attn.to_{x}" for x in "qkv"))
        fuse(f"{theirs}.txt_attn.qkv", *(f"{ours}.attn.add_{x}_proj" for x in "qkv"))
        for side, q, k in (("img", "norm_q", "norm_k"), ("txt", "norm_added_q", "norm_added_k")):
            out[f"{theirs}.{side}_attn.norm.query_norm.scale"] = state.pop(
                f"{ours}.attn.{q}.weight"
            )
            out[f"{theirs}.{side}_attn.norm.key_norm.scale"] = state.pop(f"{ours}.attn.{k}.weight")
        move(f"{theirs}.img_mlp.0", f"{ours}.ff.net.0.proj")
        move(f"{theirs}.img_mlp.2", f"{ours}.ff.net.2")
        move(f"{theirs}.txt_mlp.0", f"{ours}.ff_context.net.0.proj")
        move(f"{theirs}.txt_mlp.2", f"{ours}.ff_context.net.2")
        move(f"{theirs}.img_attn.proj", f"{ours}.attn.to_out.0")
        move(f"{theirs}.txt_attn.proj", f"{ours}.attn.to_add_out")
    for i in range(transformer.config.num_single_layers):
        ours, theirs = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        move(f"{theirs}.modulation.lin", f"{ours}.norm.linear")
        fuse(f"{theirs}.linear1", *(f"{ours}.attn.to_{x}" for x in "qkv"), f"{ours}.proj_mlp")
        out[f"{theirs}.norm.query_norm.scale"] = state.pop(f"{ours}.attn.norm_q.weight")
        out[f"{theirs}.norm.key_norm.scale"] = state.pop(f"{ours}.attn.norm_k.weight")
        move(f"{theirs}.linear2", f"{ours}.proj_out")
    move("final_layer.linear", "proj_out")
    for kind in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(
            state.pop(f"norm_out.linear.{kind}")
        )
    assert not state, f"weights left unmapped: {sorted(state)}"
    return out
