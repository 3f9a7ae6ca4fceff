"""Session fixtures of tiny SD 3.x and Flux.1 models (built by tests/flow_models.py), registered in
tests/conftest.py. Building imports diffusers, so it happens inside the fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def t5_tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.flow_models import train_t5_tokenizer

    return train_t5_tokenizer(tmp_path_factory.mktemp("t5") / "t5_tokenizer")


@pytest.fixture(scope="session")
def sd3_folder(tmp_path_factory: pytest.TempPathFactory, t5_tokenizer_folder: Path) -> Path:
    from tests.flow_models import build_sd3_pipeline, save_pipeline

    folder = tmp_path_factory.mktemp("models") / "tiny-sd3"
    return save_pipeline(build_sd3_pipeline(t5_tokenizer_folder), folder)


@pytest.fixture(scope="session")
def flux_folder(tmp_path_factory: pytest.TempPathFactory, t5_tokenizer_folder: Path) -> Path:
    from tests.flow_models import build_flux_pipeline, save_pipeline

    folder = tmp_path_factory.mktemp("models") / "tiny-flux-dev"
    return save_pipeline(build_flux_pipeline(t5_tokenizer_folder), folder)


@pytest.fixture(scope="session")
def schnell_folder(tmp_path_factory: pytest.TempPathFactory, t5_tokenizer_folder: Path) -> Path:
    from tests.flow_models import build_flux_pipeline, save_pipeline

    folder = tmp_path_factory.mktemp("models") / "tiny-flux-schnell"
    return save_pipeline(build_flux_pipeline(t5_tokenizer_folder, dev=False, seed=5), folder)


@pytest.fixture(scope="session")
def sd3_single_file(tmp_path_factory: pytest.TempPathFactory, t5_tokenizer_folder: Path) -> Path:
    """An all-in-one SD 3 file with only spiece.model beside it for its T5 tokenizer."""
    from tests.flow_models import build_sd3_pipeline, write_sd3_all_in_one

    folder = tmp_path_factory.mktemp("checkpoints")
    path = write_sd3_all_in_one(
        build_sd3_pipeline(t5_tokenizer_folder), folder / "sd3-tiny.safetensors"
    )
    shutil.copy(t5_tokenizer_folder / "spiece.model", folder / "spiece.model")
    return path


@pytest.fixture(scope="session")
def flux_comfy_file(tmp_path_factory: pytest.TempPathFactory, t5_tokenizer_folder: Path) -> Path:
    """A Flux transformer in ComfyUI's models/unet with its companions, and the T5 tokenizer
    where ComfyUI keeps its own (comfy/text_encoders/t5_tokenizer)."""
    from tests.flow_models import build_flux_pipeline, write_comfy_flux

    root = tmp_path_factory.mktemp("ComfyUI")
    path = write_comfy_flux(build_flux_pipeline(t5_tokenizer_folder), root)
    shutil.copytree(t5_tokenizer_folder, root / "comfy" / "text_encoders" / "t5_tokenizer")
    return path


@pytest.fixture(scope="session")
def sd3_controlnet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.flow_models import build_sd3_controlnet, save_pipeline

    folder = tmp_path_factory.mktemp("controlnets") / "sd3-controlnet-canny"
    return save_pipeline(build_sd3_controlnet(), folder)


@pytest.fixture(scope="session")
def flux_controlnet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.flow_models import build_flux_controlnet, save_pipeline

    folder = tmp_path_factory.mktemp("controlnets") / "flux-controlnet-depth"
    return save_pipeline(build_flux_controlnet(), folder)


@pytest.fixture(scope="session")
def flux_union_controlnet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.flow_models import build_flux_controlnet, save_pipeline

    folder = tmp_path_factory.mktemp("controlnets") / "flux-controlnet-union"
    return save_pipeline(build_flux_controlnet(union=True, seed=3), folder)
