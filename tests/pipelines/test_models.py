from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pipelines.errors import FamilyMismatchError, ModelFormatError, ModelNotFoundError
from pipelines.models import (
    check_family,
    config_folder_for,
    default_search_folders,
    detect_family,
    discover_models,
    load_base_pipeline,
    load_controlnet,
    set_offline_environment,
)
from pipelines.resources import resource_path
from pipelines.types import ControlKind, ModelFamily
from tests.original_layout import (
    write_controlnet_single_file,
    write_sd1_single_file,
    write_sdxl_single_file,
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def single_files(
    tmp_path_factory: pytest.TempPathFactory,
    sd1_folder: Path,
    sdxl_folder: Path,
    controlnet_sd1_folder: Path,
    controlnet_sdxl_folder: Path,
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("single")
    return {
        "sd1": write_sd1_single_file(sd1_folder, root / "tiny_sd15.safetensors"),
        "sdxl": write_sdxl_single_file(sdxl_folder, root / "tiny_sdxl.safetensors"),
        "cn_sd1": write_controlnet_single_file(
            controlnet_sd1_folder, root / "control_v11p_sd15_canny.safetensors"
        ),
        "cn_sdxl": write_controlnet_single_file(
            controlnet_sdxl_folder, root / "controlnet-depth-sdxl.safetensors", layout="diffusers"
        ),
    }


def _assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    want, got = expected.state_dict(), actual.state_dict()
    assert set(want) == set(got)
    for key, value in want.items():
        assert torch.equal(value, got[key]), key


def test_shipped_tokenizer_gives_clip_ids() -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(resource_path("tokenizers", "clip"))
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_set_offline_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "0")  # an explicit user choice is kept
    set_offline_environment()
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "0"


def test_default_search_folders_follow_hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert default_search_folders() == [tmp_path / "home" / "hub"]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert default_search_folders() == [tmp_path / "cache"]


def test_detect_family_of_diffusers_folders(
    sd1_folder, sdxl_folder, controlnet_sd1_folder, controlnet_sdxl_folder
) -> None:
    assert detect_family(sd1_folder) == ModelFamily.SD1
    assert detect_family(sdxl_folder) == ModelFamily.SDXL
    assert detect_family(controlnet_sd1_folder) == ModelFamily.SD1
    assert detect_family(controlnet_sdxl_folder) == ModelFamily.SDXL


def test_detect_family_of_single_files(single_files, tmp_path) -> None:
    assert detect_family(single_files["sd1"]) == ModelFamily.SD1
    assert detect_family(single_files["sdxl"]) == ModelFamily.SDXL
    assert detect_family(single_files["cn_sd1"]) == ModelFamily.SD1
    assert detect_family(single_files["cn_sdxl"]) == ModelFamily.SDXL
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0.alpha": torch.ones(1)}, str(lora))
    with pytest.raises(ModelFormatError, match="neither"):
        detect_family(lora)


def test_detect_family_from_real_key_layouts(tmp_path) -> None:
    # Header-only stand-ins for real files: the keys and shapes that decide the family.
    def write(name: str, tensors: dict[str, tuple[int, ...]]) -> Path:
        path = tmp_path / name
        save_file({k: torch.zeros(shape) for k, shape in tensors.items()}, str(path))
        return path

    attn = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    sd15 = write("v1-5.safetensors", {attn: (320, 768)})
    sdxl = write(
        "xl.safetensors", {attn: (640, 2048), "model.diffusion_model.label_emb.0.0.weight": (1, 1)}
    )
    sd2 = write("v2.safetensors", {attn: (320, 1024)})
    cn = write("cn.safetensors", {"control_model.input_hint_block.0.weight": (16, 3, 3, 3)})
    cn_xl = write(
        "cn_xl.safetensors",
        {"controlnet_cond_embedding.conv_in.weight": (1,), "add_embedding.linear_1.weight": (1,)},
    )
    assert detect_family(sd15) == ModelFamily.SD1
    assert detect_family(sdxl) == ModelFamily.SDXL
    assert detect_family(cn) == ModelFamily.SD1
    assert detect_family(cn_xl) == ModelFamily.SDXL
    with pytest.raises(ModelFormatError, match="2.x"):
        detect_family(sd2)


def test_sd1_single_file_round_trip(sd1_folder, single_files) -> None:
    expected, family = load_base_pipeline(sd1_folder)
    loaded, loaded_family = load_base_pipeline(single_files["sd1"], config_folder=sd1_folder)
    assert family == loaded_family == ModelFamily.SD1
    assert type(loaded).__name__ == "StableDiffusionPipeline"
    assert loaded.safety_checker is None
    for name in ("unet", "vae", "text_encoder"):
        _assert_same_weights(getattr(expected, name), getattr(loaded, name))
    assert loaded.tokenizer("a cat").input_ids == expected.tokenizer("a cat").input_ids


def test_sdxl_single_file_round_trip(sdxl_folder, single_files) -> None:
    expected, _ = load_base_pipeline(sdxl_folder)
    loaded, family = load_base_pipeline(single_files["sdxl"], config_folder=sdxl_folder)
    assert family == ModelFamily.SDXL
    assert type(loaded).__name__ == "StableDiffusionXLPipeline"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        _assert_same_weights(getattr(expected, name), getattr(loaded, name))
    assert loaded.tokenizer_2.pad_token == "!"


def test_controlnet_single_file_round_trip(
    controlnet_sd1_folder, controlnet_sdxl_folder, single_files
) -> None:
    for key, folder, family in (
        ("cn_sd1", controlnet_sd1_folder, ModelFamily.SD1),
        ("cn_sdxl", controlnet_sdxl_folder, ModelFamily.SDXL),
    ):
        expected, _ = load_controlnet(folder)
        loaded, loaded_family = load_controlnet(single_files[key], config_folder=folder)
        assert loaded_family == family
        _assert_same_weights(expected, loaded)


def test_shape_mismatch_with_shipped_config_is_a_format_error(single_files) -> None:
    # The tiny weights do not fit the real SD 1.5 architecture: a clear error, no traceback type.
    with pytest.raises(ModelFormatError, match="tiny_sd15"):
        load_base_pipeline(single_files["sd1"])


def test_pickle_checkpoint_refused_by_default(tmp_path) -> None:
    ckpt = tmp_path / "old_model.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFormatError, match="pickle"):
        load_base_pipeline(ckpt)
    with pytest.raises(ModelFormatError, match="pickle"):
        load_controlnet(tmp_path / "old_model.ckpt")


def test_pickle_checkpoint_loads_when_allowed(tmp_path, sd1_folder, single_files) -> None:
    from safetensors.torch import load_file

    ckpt = tmp_path / "tiny.ckpt"  # no family hint in the name: the keys decide
    torch.save({"state_dict": load_file(single_files["sd1"])}, ckpt)
    expected, _ = load_base_pipeline(sd1_folder)
    loaded, family = load_base_pipeline(ckpt, allow_pickle=True, config_folder=sd1_folder)
    assert family == ModelFamily.SD1
    _assert_same_weights(expected.unet, loaded.unet)


def test_missing_path(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "model.safetensors"
    with pytest.raises(ModelNotFoundError, match="nowhere"):
        load_base_pipeline(missing)
    with pytest.raises(ModelNotFoundError, match="nowhere"):
        load_controlnet(missing)
    with pytest.raises(ModelNotFoundError):
        detect_family(missing)


def test_corrupt_files(tmp_path, single_files) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x13\x37" * 100)
    for call in (load_base_pipeline, load_controlnet, detect_family):
        with pytest.raises(ModelFormatError, match="garbage"):
            call(garbage)
    # A valid header whose tensor data was cut off.
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(single_files["sd1"].read_bytes()[:20000])
    with pytest.raises(ModelFormatError, match="truncated"):
        load_base_pipeline(truncated, config_folder=single_files["sd1"].parent)


def test_wrong_role_is_refused(sd1_folder, controlnet_sd1_folder, single_files) -> None:
    with pytest.raises(ModelFormatError, match="ControlNet"):
        load_base_pipeline(controlnet_sd1_folder)
    with pytest.raises(ModelFormatError, match="not a ControlNet"):
        load_controlnet(sd1_folder)
    with pytest.raises(ModelFormatError, match="not a ControlNet"):
        load_controlnet(single_files["sd1"])


def test_family_mismatch(controlnet_sdxl_folder) -> None:
    check_family(ModelFamily.SD1, ModelFamily.SD1, "x")
    base = ModelFamily.SD1
    with pytest.raises(FamilyMismatchError, match="is an SDXL ControlNet but the model is SD 1.x"):
        check_family(base, detect_family(controlnet_sdxl_folder), controlnet_sdxl_folder)


def test_offline_loading_of_folders(monkeypatch, sd1_folder, sdxl_folder) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe, family = load_base_pipeline(sd1_folder, dtype=torch.float32)
    assert family == ModelFamily.SD1 and pipe.unet.dtype == torch.float32
    pipe, family = load_base_pipeline(str(sdxl_folder))
    assert family == ModelFamily.SDXL and type(pipe).__name__ == "StableDiffusionXLPipeline"


@pytest.mark.parametrize(
    ("folder", "component", "expected"),
    [
        ("sd1", "unet", 859_520_964),
        ("sd1", "vae", 83_653_863),
        ("sd1", "text_encoder", 123_060_480),
        ("sdxl", "unet", 2_567_463_684),
        ("sdxl", "text_encoder_2", 694_659_840),
        ("controlnet-sd1", "", 361_279_120),
        ("controlnet-sdxl", "", 1_251_014_160),
    ],
)
def test_shipped_configs_build_the_real_architectures(folder, component, expected) -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    path = resource_path("configs", folder, component)
    with init_empty_weights():
        if component == "unet":
            model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(path))
        elif component == "vae":
            model = AutoencoderKL.from_config(AutoencoderKL.load_config(path))
        elif component.startswith("text_encoder"):
            cls = CLIPTextModelWithProjection if component.endswith("_2") else CLIPTextModel
            model = cls(CLIPTextConfig.from_pretrained(path))
        else:
            model = ControlNetModel.from_config(ControlNetModel.load_config(path))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_shipped_pipeline_configs_name_the_right_classes() -> None:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    sd1 = StableDiffusionPipeline.load_config(config_folder_for(ModelFamily.SD1))
    sdxl = StableDiffusionXLPipeline.load_config(config_folder_for(ModelFamily.SDXL))
    assert sd1["_class_name"] == "StableDiffusionPipeline"
    assert sdxl["_class_name"] == "StableDiffusionXLPipeline"
    assert (config_folder_for(ModelFamily.SDXL, controlnet=True) / "config.json").is_file()
    # Tokenizers are passed from resources/tokenizers, so the config folders carry none.
    assert not list(resource_path("configs").rglob("vocab.json"))


def _fake_hf_repo(cache: Path, repo: str, source: Path | None, revision: str = "abc123") -> Path:
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / revision
    if source is not None:
        shutil.copytree(source, snapshot)
    else:  # what from_single_file leaves behind: configs, no weights
        (snapshot / "unet").mkdir(parents=True)
        (snapshot / "model_index.json").write_text(
            json.dumps({"_class_name": "StableDiffusionPipeline"})
        )
        (snapshot / "unet" / "config.json").write_text("{}")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    return snapshot


def test_discovery_over_ui_layouts_and_hf_cache(
    tmp_path,
    monkeypatch,
    single_files,
    sd1_folder,
    sdxl_folder,
    controlnet_sd1_folder,
    controlnet_sdxl_folder,
) -> None:
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    sd1_snapshot = _fake_hf_repo(cache, "someone/tiny-sd1", sd1_folder)
    cn_snapshot = _fake_hf_repo(cache, "someone/controlnet-openpose-sdxl", controlnet_sdxl_folder)
    _fake_hf_repo(cache, "someone/configs-only", None)
    taesd = cache / "models--madebyollin--taesd" / "snapshots" / "r1"
    taesd.mkdir(parents=True)
    (taesd / "config.json").write_text(json.dumps({"_class_name": "AutoencoderTiny"}))
    save_file({"x": torch.zeros(1)}, str(taesd / "diffusion_pytorch_model.safetensors"))

    a1111 = tmp_path / "stable-diffusion-webui"
    checkpoints = a1111 / "models" / "Stable-diffusion"
    control = a1111 / "models" / "ControlNet"
    checkpoints.mkdir(parents=True)
    control.mkdir(parents=True)
    shutil.copy(single_files["sd1"], checkpoints / "dreamy_v1.safetensors")
    shutil.copy(single_files["cn_sd1"], control / "control_v11p_sd15_canny.safetensors")
    (checkpoints / "legacy.ckpt").write_bytes(b"PK")
    (checkpoints / "broken.safetensors").write_bytes(b"garbage")
    (a1111 / "venv" / "lib").mkdir(parents=True)  # never walked into

    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    shutil.copy(
        single_files["sdxl"], comfy / "models" / "checkpoints" / "juggernaut_xl.safetensors"
    )
    shutil.copytree(controlnet_sd1_folder, comfy / "models" / "controlnet" / "sd15-depth-diffusers")
    shutil.copytree(sdxl_folder, comfy / "models" / "diffusers" / "my-sdxl")

    found = discover_models([a1111, comfy])
    by_name = {m.name: m for m in found.models}

    dreamy = by_name["dreamy_v1"]
    assert (dreamy.role, dreamy.family, dreamy.format) == ("base", ModelFamily.SD1, "single_file")
    assert dreamy.source == a1111
    canny = by_name["control_v11p_sd15_canny"]
    assert (canny.role, canny.family, canny.control_kind) == (
        "controlnet",
        ModelFamily.SD1,
        ControlKind.CANNY,
    )
    assert by_name["legacy"].needs_pickle and by_name["legacy"].role == "base"
    assert not dreamy.needs_pickle
    assert by_name["juggernaut_xl"].family == ModelFamily.SDXL
    depth = by_name["sd15-depth-diffusers"]
    assert (depth.format, depth.control_kind, depth.family) == (
        "diffusers",
        ControlKind.DEPTH,
        ModelFamily.SD1,
    )
    assert by_name["my-sdxl"].family == ModelFamily.SDXL

    cached = by_name["someone/tiny-sd1"]
    assert (cached.path, cached.format, cached.source) == (sd1_snapshot, "hf_cache", cache)
    pose = by_name["someone/controlnet-openpose-sdxl"]
    assert (pose.path, pose.control_kind, pose.family) == (
        cn_snapshot,
        ControlKind.POSE,
        ModelFamily.SDXL,
    )
    assert by_name["madebyollin/taesd"].role == "tiny_vae"
    assert "someone/configs-only" not in by_name

    assert any("broken.safetensors" in p for p in found.problems)
    assert any("configs-only" in p and "no UNet weights" in p for p in found.problems)
    assert checkpoints in found.searched and cache in found.searched
    assert (comfy / "models" / "controlnet") in found.searched
    assert {m.name for m in found.controlnets(ModelFamily.SDXL)} == {
        "someone/controlnet-openpose-sdxl"
    }
    assert {m.name for m in found.bases()} >= {"dreamy_v1", "juggernaut_xl", "my-sdxl", "legacy"}

    # A found path loads as it is, the HF cache repo folder included.
    assert detect_family(cache / "models--someone--tiny-sd1") == ModelFamily.SD1
    without_cache = discover_models([a1111], include_hf_cache=False)
    assert cache not in without_cache.searched
    assert "someone/tiny-sd1" not in {m.name for m in without_cache.models}


def test_unreadable_entries_are_skipped_with_a_note_and_the_scan_goes_on(
    tmp_path, monkeypatch, single_files, sd1_folder
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(sd1_folder, root / "good-sd1")
    shutil.copy(single_files["sd1"], root / "single.safetensors")
    locked = root / "locked"  # stat() refused, like a folder of another user
    locked.mkdir()
    unlisted = root / "unlisted"  # listing refused
    unlisted.mkdir()
    (unlisted / "hidden.safetensors").write_bytes(b"x")
    real_stat, real_iterdir = Path.stat, Path.iterdir

    def stat(self, *args, **kwargs):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    def iterdir(self):
        if self == unlisted:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    # The tests run as root, for whom chmod denies nothing: refuse through the calls instead.
    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.setattr(Path, "iterdir", iterdir)
    found = discover_models([root], include_hf_cache=False)
    assert sorted(m.name for m in found.bases()) == ["good-sd1", "single"]
    assert sorted(found.skipped) == [(locked, "Permission denied"), (unlisted, "Permission denied")]
    assert f"{locked}: cannot be read (Permission denied); skipped." in found.problems


def test_an_unreadable_search_folder_is_noted_not_fatal(tmp_path, monkeypatch, sd1_folder) -> None:
    other = tmp_path / "other"
    shutil.copytree(sd1_folder, other / "tiny")
    refused = tmp_path / "refused"
    refused.mkdir()
    real_stat = Path.stat

    def stat(self, *args, **kwargs):
        if self == refused or refused in self.parents:
            raise OSError(5, "Input/output error", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    found = discover_models([refused, other], include_hf_cache=False)
    assert [m.name for m in found.bases()] == ["tiny"]
    assert (refused, "Input/output error") in found.skipped
