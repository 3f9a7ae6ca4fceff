"""Fixtures shared by the core and window tests: tiny real models, built once per session."""

from __future__ import annotations

import os

import pytest

# Nothing in the tests may reach a hub; the app sets the same at start.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.flow_fixtures import (  # noqa: E402, F401 - fixtures of the tiny SD 3.x / Flux.1 models
    flux_comfy_file,
    flux_controlnet_folder,
    flux_folder,
    flux_union_controlnet_folder,
    schnell_folder,
    sd3_controlnet_folder,
    sd3_folder,
    sd3_single_file,
    t5_tokenizer_folder,
)


@pytest.fixture(autouse=True)
def own_user_folders(tmp_path_factory, monkeypatch):
    """Every test gets its own HOME, XDG folders and log folder, so none writes to the user's.

    A hub cache the developer pointed to explicitly (HF_HUB_CACHE, HF_HOME) stays as it is; the
    tests never download, and huggingface_hub read its paths at import anyway.
    """
    root = tmp_path_factory.mktemp("user")
    folders = {
        "HOME": root / "home",
        "XDG_CONFIG_HOME": root / "config",
        "XDG_DATA_HOME": root / "data",
        "XDG_STATE_HOME": root / "state",
        "XDG_CACHE_HOME": root / "cache",
        "DIFFUSION_STUDIO_LOG_DIR": root / "log",
    }
    for name, folder in folders.items():
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))
    return folders


@pytest.fixture(scope="session")
def sd1_folder(tmp_path_factory):
    from tests.tiny_models import save_sd1

    return save_sd1(tmp_path_factory.mktemp("models") / "tiny-sd1")


@pytest.fixture(scope="session")
def sdxl_folder(tmp_path_factory):
    from tests.tiny_models import save_sdxl

    return save_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")


@pytest.fixture(scope="session")
def controlnet_sd1_folder(tmp_path_factory):
    from tests.tiny_models import save_controlnet

    return save_controlnet(tmp_path_factory.mktemp("models") / "tiny-controlnet-canny-sd1", "sd1")


@pytest.fixture(scope="session")
def controlnet_sdxl_folder(tmp_path_factory):
    from tests.tiny_models import save_controlnet

    return save_controlnet(
        tmp_path_factory.mktemp("models") / "tiny-controlnet-canny-sdxl", "sdxl", seed=2
    )


@pytest.fixture(scope="session")
def engine():
    """One engine for the session: loading is what the cache is for."""
    from pipelines.engine import Engine, EngineSettings

    # fp32 everywhere: bf16-capable CPUs would otherwise pick bf16, and the tests compare exactly.
    return Engine(EngineSettings(precision="fp32"))


@pytest.fixture(scope="session")
def condition_image(tmp_path_factory):
    """A 64x64 edge map (a white cross on black) for the tiny ControlNets."""
    from PIL import Image

    path = tmp_path_factory.mktemp("maps") / "edges.png"
    image = Image.new("RGB", (64, 64))
    for x in range(8, 56):
        image.putpixel((x, 32), (255, 255, 255))
        image.putpixel((32, x), (255, 255, 255))
    image.save(path)
    return path
