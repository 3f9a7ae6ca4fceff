"""Tiny Stable Diffusion components with the real architectures and random weights.

Saved as ordinary diffusers folders so the tests exercise the same loading code as user models.
Every builder is seeded: the same call gives the same weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from pipelines.resources import resource_path

TEXT_DIM = 32
# SDXL's second encoder is wider than its first (1280 vs 768); single-file loading tells them apart
# by width, so the tiny model keeps them different too.
TEXT_DIM_2 = 48
BLOCKS = (32, 64)
SAMPLE_SIZE = 8  # latent size: 64 px images


def _scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )


def _text_config(projection: int | None = None, width: int = TEXT_DIM) -> CLIPTextConfig:
    kwargs = dict(
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
        hidden_size=width,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_act="gelu",
    )
    if projection:
        kwargs["projection_dim"] = projection
    return CLIPTextConfig(**kwargs)


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(16, 32, 32, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=16,
        layers_per_block=1,
        sample_size=SAMPLE_SIZE * 8,
    )


def _tokenizer(pad_exclaim: bool = False) -> CLIPTokenizer:
    name = "clip-pad-exclaim" if pad_exclaim else "clip"
    return CLIPTokenizer.from_pretrained(resource_path("tokenizers", name))


def sd1_unet(cross_attention_dim: int = TEXT_DIM) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        block_out_channels=BLOCKS,
        layers_per_block=1,
        sample_size=SAMPLE_SIZE,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def sdxl_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        block_out_channels=BLOCKS,
        layers_per_block=1,
        sample_size=SAMPLE_SIZE,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + TEXT_DIM_2,  # time ids + pooled text
        cross_attention_dim=TEXT_DIM + TEXT_DIM_2,  # both encoders' hidden states concatenated
        norm_num_groups=16,
    )


def build_sd1_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    torch.manual_seed(seed)
    return StableDiffusionPipeline(
        unet=sd1_unet(),
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        tokenizer=_tokenizer(),
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    torch.manual_seed(seed)
    return StableDiffusionXLPipeline(
        unet=sdxl_unet(),
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(
            _text_config(projection=TEXT_DIM_2, width=TEXT_DIM_2)
        ),
        tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(pad_exclaim=True),
        scheduler=_scheduler(),
    )


def build_controlnet(family: str = "sd1", seed: int = 1) -> ControlNetModel:
    torch.manual_seed(seed)
    unet = sd1_unet() if family == "sd1" else sdxl_unet()
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(8, 16, 16, 32)
    )
    # from_unet zero-initialises the output convolutions; random values make the control visible.
    with torch.no_grad():
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            module.weight.normal_(0, 0.3)
            module.bias.normal_(0, 0.3)
    return controlnet


def save_sd1(folder: Path, seed: int = 0) -> Path:
    build_sd1_pipeline(seed).save_pretrained(folder, safe_serialization=True)
    return folder


def save_sdxl(folder: Path, seed: int = 0) -> Path:
    build_sdxl_pipeline(seed).save_pretrained(folder, safe_serialization=True)
    return folder


def save_controlnet(folder: Path, family: str = "sd1", seed: int = 1) -> Path:
    build_controlnet(family, seed).save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_autoencoder(folder: Path, seed: int = 3) -> Path:
    """A TAESD-shaped preview decoder (4 latent channels, 8x upsampling)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    ).save_pretrained(folder, safe_serialization=True)
    return folder
