"""SD 3.x and Flux.1 files: family detection from configs and headers, offline loading of folders,
all-in-one files and transformer-only files with their companions, and the errors that name what is
missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pipelines.errors import ModelFormatError, ModelNotFoundError
from pipelines.flow_files import inspect_flow_header
from pipelines.models import detect_family, discover_models, load_base_pipeline
from pipelines.types import ModelFamily


def _header_file(path: Path, names: dict[str, tuple[int, ...]]) -> Path:
    # Detection reads names and shapes only: tiny tensors with the real names stand in for weights.
    save_file({name: torch.zeros(shape) for name, shape in names.items()}, path)
    return path


def test_folders_and_single_files_tell_their_family(
    sd3_folder, flux_folder, schnell_folder, sd3_single_file, flux_comfy_file
):
    assert detect_family(sd3_folder) is ModelFamily.SD3
    assert detect_family(flux_folder) is ModelFamily.FLUX
    assert detect_family(schnell_folder) is ModelFamily.FLUX
    assert detect_family(sd3_single_file) is ModelFamily.SD3
    assert detect_family(flux_comfy_file) is ModelFamily.FLUX


def test_original_key_layouts_and_flux_variants(tmp_path):
    sd3 = _header_file(tmp_path / "sd3.5_medium.safetensors", {
        "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": (4,),
        "model.diffusion_model.x_embedder.proj.weight": (64, 16, 2, 2),
        "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": (4,),
        "first_stage_model.decoder.conv_in.weight": (4, 16, 3, 3),
    })  # fmt: skip
    dev = _header_file(tmp_path / "flux1-dev.safetensors", {
        "double_blocks.0.img_attn.norm.key_norm.scale": (4,),
        "guidance_in.in_layer.bias": (4,),
    })  # fmt: skip
    schnell = _header_file(tmp_path / "flux1-schnell.safetensors", {
        "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": (4,),
    })  # fmt: skip
    assert detect_family(sd3) is ModelFamily.SD3
    assert detect_family(dev) is detect_family(schnell) is ModelFamily.FLUX
    from pipelines.models import read_safetensors_header

    info = inspect_flow_header(read_safetensors_header(sd3))
    assert info.original_layout and info.has_vae and info.text_encoders == ("clip_l",)
    assert inspect_flow_header(read_safetensors_header(dev)).label == "Flux.1-dev"
    assert inspect_flow_header(read_safetensors_header(schnell)).label == "Flux.1-schnell"


def _same_image(a: object, b: object) -> float:
    import numpy as np

    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max())


def _image(pipe: object) -> object:
    return pipe(
        "a red cat", num_inference_steps=2, height=64, width=64,
        generator=torch.Generator().manual_seed(0), output_type="np",
    ).images[0]  # fmt: skip


def test_single_files_load_as_their_folders(
    sd3_folder, flux_folder, sd3_single_file, flux_comfy_file
):
    for folder, single in ((sd3_folder, sd3_single_file), (flux_folder, flux_comfy_file)):
        from_folder, family = load_base_pipeline(folder)
        from_file, file_family = load_base_pipeline(single)
        assert family is file_family is detect_family(folder)
        # Sizes the file does not store (heads, layers) were derived from its shapes.
        assert from_file.transformer.config.num_layers == from_folder.transformer.config.num_layers
        assert _same_image(_image(from_folder), _image(from_file)) < 1e-4


def test_missing_t5_tokenizer_names_the_file_and_every_place(tmp_path, flux_comfy_file):
    root = tmp_path / "ComfyUI"
    shutil.copytree(flux_comfy_file.parents[2] / "models", root / "models")  # no comfy/ folder
    with pytest.raises(ModelNotFoundError) as caught:
        load_base_pipeline(root / "models" / "unet" / flux_comfy_file.name)
    message = str(caught.value)
    assert "spiece.model" in message and "tokenizer.json" in message
    assert str(root / "models" / "unet") in message
    assert str(root / "models" / "text_encoders" / "t5_tokenizer") in message
    assert str(root / "comfy" / "text_encoders" / "t5_tokenizer") in message


def test_missing_vae_names_where_it_was_looked_for(tmp_path, flux_comfy_file):
    root = tmp_path / "ComfyUI"
    shutil.copytree(flux_comfy_file.parents[2], root)
    (root / "models" / "vae" / "ae.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="VAE") as caught:
        load_base_pipeline(root / "models" / "unet" / flux_comfy_file.name)
    assert str(root / "models" / "vae") in str(caught.value)


def test_sd3_without_t5_runs_on_its_clip_encoders_and_says_so(tmp_path, t5_tokenizer_folder):
    from tests.flow_models import build_sd3_pipeline, write_sd3_all_in_one

    path = write_sd3_all_in_one(
        build_sd3_pipeline(t5_tokenizer_folder), tmp_path / "sd3-no-t5.safetensors", t5=False
    )
    pipe, _ = load_base_pipeline(path)
    assert pipe.text_encoder_3 is None
    assert "T5" in pipe.load_notes[0]
    assert _image(pipe).shape == (64, 64, 3)


def test_edit_models_are_refused_with_a_reason(tmp_path):
    fill = _header_file(tmp_path / "flux1-fill-dev.safetensors", {
        "double_blocks.0.img_attn.norm.key_norm.scale": (4,),
        "guidance_in.in_layer.bias": (4,),
        "img_in.weight": (128, 384),
        "txt_in.weight": (128, 256),
        "vector_in.in_layer.weight": (128, 64),
    })  # fmt: skip
    with pytest.raises(
        ModelFormatError, match="Cannot load flux1-fill-dev.safetensors: it takes 384"
    ):
        load_base_pipeline(fill)


def test_discovery_lists_flow_models_and_not_their_parts(
    flux_comfy_file, sd3_folder, sd3_single_file
):
    comfy_root = flux_comfy_file.parents[2]
    found = discover_models([comfy_root, sd3_folder.parent, sd3_single_file.parent],
                            include_hf_cache=False)  # fmt: skip
    families = {m.path: m.family for m in found.bases()}
    assert families[flux_comfy_file] is ModelFamily.FLUX
    assert families[sd3_folder] is ModelFamily.SD3
    assert families[sd3_single_file] is ModelFamily.SD3
    assert not [p for p in found.problems if "clip_l" in p or "ae.safetensors" in p]


def test_listings_tell_flux_dev_from_schnell(flux_folder, schnell_folder, flux_comfy_file):
    found = discover_models([flux_folder.parent, schnell_folder.parent, flux_comfy_file.parent],
                            include_hf_cache=False)  # fmt: skip
    labels = {m.path: m.family_label for m in found.bases()}
    assert labels[flux_folder] == "Flux.1-dev"
    assert labels[schnell_folder] == "Flux.1-schnell"
    assert labels[flux_comfy_file] == "Flux.1-dev"


def test_a_flux_file_in_black_forest_labs_layout_is_sized_from_its_shapes(tmp_path, flux_folder):
    from pipelines.flow_files import flux_transformer_config
    from pipelines.models import read_safetensors_header
    from tests.flow_models import flux_original_layout

    reference, _ = load_base_pipeline(flux_folder)
    path = tmp_path / "flux1-dev-tiny.safetensors"
    original = flux_original_layout(reference.transformer)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in original.items()}, path)
    header = read_safetensors_header(path)
    info = inspect_flow_header(header)
    assert info.original_layout and info.label == "Flux.1-dev"
    sizes = flux_transformer_config(header, info.prefix)
    config = reference.transformer.config
    assert {k: config[k] for k in sizes} == sizes
    # diffusers converts this layout for the released width (3072) only: a narrower file is
    # refused with that reason, not with a tensor-size error.
    with pytest.raises(ModelFormatError, match="flux1-dev-tiny.safetensors: .* width of 3072"):
        load_base_pipeline(path)


def test_sd3_sizes_from_stabilitys_layout(tmp_path):
    from pipelines.flow_files import sd3_transformer_config
    from pipelines.models import read_safetensors_header

    # An SD 3.5 Medium-shaped table, 128 wide: dual attention in block 0 only, qk-norm.
    names = {
        "pos_embed": (1, 24 * 24, 128),
        "x_embedder.proj.weight": (128, 16, 2, 2),
        "context_embedder.weight": (128, 256),
        "y_embedder.mlp.0.weight": (128, 192),
        "final_layer.linear.weight": (64, 128),
        "joint_blocks.0.x_block.attn.ln_q.weight": (64,),
        "joint_blocks.0.x_block.attn2.qkv.weight": (384, 128),
        "joint_blocks.1.x_block.attn.ln_q.weight": (64,),
        "joint_blocks.2.context_block.adaLN_modulation.1.bias": (4,),
    }
    header = read_safetensors_header(
        _header_file(tmp_path / "sd3.5m.safetensors", {f"model.diffusion_model.{k}": v
                                                       for k, v in names.items()})
    )  # fmt: skip
    assert sd3_transformer_config(header, "model.diffusion_model.") == dict(
        in_channels=16, patch_size=2, num_layers=3, attention_head_dim=64, num_attention_heads=2,
        joint_attention_dim=256, caption_projection_dim=128, pooled_projection_dim=192,
        out_channels=16, dual_attention_layers=(0,), qk_norm="rms_norm", pos_embed_max_size=24,
    )  # fmt: skip


def test_hf_cache_flux_is_listed_and_lends_its_t5_tokenizer(
    tmp_path, monkeypatch, flux_folder, flux_comfy_file
):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    repo = cache / "models--black-forest-labs--FLUX.1-dev"
    snapshot = repo / "snapshots" / "r1"
    shutil.copytree(flux_folder, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("r1")
    found = discover_models([])
    (cached,) = [m for m in found.bases() if m.format == "hf_cache"]
    assert (cached.name, cached.family_label) == ("black-forest-labs/FLUX.1-dev", "Flux.1-dev")
    assert detect_family(repo) is ModelFamily.FLUX
    # A ComfyUI transformer with no tokenizer of its own finds the cached model's tokenizer_2.
    root = tmp_path / "ComfyUI"
    shutil.copytree(flux_comfy_file.parents[2] / "models", root / "models")
    pipe, _ = load_base_pipeline(root / "models" / "unet" / flux_comfy_file.name)
    assert pipe.tokenizer_2("a red cat").input_ids[-1] == 1  # T5's end of sequence
