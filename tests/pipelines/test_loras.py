"""LoRAs as users have them: found, checked against the model, applied, switched and removed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipelines.loras import discover_loras, lora_folders
from pipelines.types import GenerationRequest, ModelFamily
from tests.lora_files import save_embedding, save_kohya_lora
from tests.tiny_models import TEXT_DIM, build_sd1_pipeline, build_sdxl_pipeline


@pytest.fixture(scope="module")
def lora_root(tmp_path_factory):
    """A model folder laid out as AUTOMATIC1111's: LoRAs in Lora/, embeddings in embeddings/."""
    root = tmp_path_factory.mktemp("webui")
    sd1, sdxl = build_sd1_pipeline(), build_sdxl_pipeline()
    save_kohya_lora(root / "Lora" / "detail_tweaker.safetensors", sd1, seed=1)
    save_kohya_lora(root / "Lora" / "styles" / "film_grain.safetensors", sd1, seed=2)
    save_kohya_lora(root / "Lora" / "xl_only.safetensors", sdxl, seed=3)
    (root / "Lora" / "notes.safetensors").write_bytes(b"not a safetensors file")
    save_embedding(root / "embeddings" / "shiny-style.safetensors", (TEXT_DIM,))
    return root


@pytest.fixture(scope="module")
def lora_engine(lora_root):
    from pipelines.engine import Engine, EngineSettings

    return Engine(EngineSettings(model_folders=(lora_root,), precision="fp32"))


def image(engine, sd1_folder, prompt: str):
    request = GenerationRequest(prompt=prompt, model=str(sd1_folder), seed=5, steps=2)
    result = engine.run(request)
    return np.asarray(result.image), result


def test_discovery_lists_loras_with_their_family_and_skips_the_rest(lora_root):
    found = discover_loras(lora_folders([lora_root]))
    families = {info.name: info.family for info in found.loras}
    assert families == {
        "detail_tweaker": ModelFamily.SD1,
        "film_grain": ModelFamily.SD1,
        "xl_only": ModelFamily.SDXL,
    }
    assert [path.name for path, _ in found.skipped] == ["notes.safetensors"]
    assert found.find("Detail_Tweaker").name == "detail_tweaker"
    assert found.find(str(lora_root / "Lora" / "xl_only.safetensors")).family is ModelFamily.SDXL


def test_lora_changes_the_image_weight_zero_and_removal_restore_it(lora_engine, sd1_folder):
    plain, first = image(lora_engine, sd1_folder, "a red car")
    pipeline = lora_engine.loaded.pipeline
    tweaked, result = image(lora_engine, sd1_folder, "a red car <lora:detail_tweaker:1>")
    assert not np.array_equal(plain, tweaked)
    assert result.warnings == ()
    assert result.request.lora_hashes.startswith("detail_tweaker: ")
    assert len(result.request.lora_hashes.split(": ")[1]) == 12
    zero, _ = image(lora_engine, sd1_folder, "a red car <lora:detail_tweaker:0>")
    assert np.array_equal(zero, plain)
    both, _ = image(lora_engine, sd1_folder,
                    "a red car <lora:detail_tweaker:0.6> <lora:film_grain:0.8>")  # fmt: skip
    assert not np.array_equal(both, tweaked) and not np.array_equal(both, plain)
    again, after = image(lora_engine, sd1_folder, "a red car")
    assert np.array_equal(again, plain)  # bit-identical to never having had a LoRA
    assert after.request.lora_hashes == ""
    assert lora_engine.loaded.pipeline is pipeline  # switching never reloaded the base model


def test_lora_for_another_family_or_missing_is_a_warning_and_the_run_goes_on(
    lora_engine, sd1_folder, lora_root
):
    plain, _ = image(lora_engine, sd1_folder, "a red car")
    refused, result = image(lora_engine, sd1_folder, "a red car <lora:xl_only:1>")
    assert np.array_equal(refused, plain)
    assert result.warnings == (
        "LoRA “xl_only” is not applied: it is a LoRA for SDXL and the model is SD 1.x.",
    )
    _, missing = image(lora_engine, sd1_folder, "a red car <lora:nowhere:0.5>")
    (warning,) = missing.warnings
    assert "“nowhere” was not found" in warning and str(lora_root / "Lora") in warning


def test_embedding_name_changes_the_conditioning_and_is_recorded(lora_engine, engine, sd1_folder):
    # The session engine has no embedding folders: the same words are read as plain text there.
    plain, unstyled = image(engine, sd1_folder, "a red car, shiny-style")
    styled, result = image(lora_engine, sd1_folder, "a red car, shiny-style")
    assert not np.array_equal(plain, styled)
    assert unstyled.request.ti_hashes == ""
    assert result.request.ti_hashes.startswith("shiny-style: ")


def test_comparison_columns_read_the_prompt_as_a_run_does(lora_engine, sd1_folder):
    from pipelines.compare import compare

    request = GenerationRequest(
        prompt="a (red:1.3) car BREAK snow <lora:detail_tweaker:0.7>, shiny-style",
        model=str(sd1_folder), seed=5, steps=3, clip_skip=2,
    )  # fmt: skip
    result = compare(lora_engine, request, ["Euler", "DDIM"])
    assert [c.lockstep for c in result.columns] == [True, True]
    assert result.request.lora_hashes and result.request.ti_hashes
    for column in result.columns:
        single = lora_engine.run(column.request)
        assert np.abs(np.asarray(column.image, np.int16) - np.asarray(single.image)).max() <= 2
    plain = lora_engine.run(replace(request, prompt="a red car BREAK snow, shiny-style"))
    assert not np.array_equal(np.asarray(plain.image), np.asarray(single.image))


def test_sdxl_lora_and_embedding_on_an_sdxl_model(lora_engine, sdxl_folder, lora_root):
    from tests.tiny_models import TEXT_DIM_2

    save_embedding(lora_root / "embeddings" / "xl-style.safetensors", (TEXT_DIM, TEXT_DIM_2))
    plain, _ = image(lora_engine, sdxl_folder, "a red car, xl-style")
    styled, result = image(lora_engine, sdxl_folder, "a red car, xl-style <lora:xl_only:0.8>")
    assert result.warnings == ()
    assert result.request.lora_hashes.startswith("xl_only: ")
    assert result.request.ti_hashes.startswith("xl-style: ")
    assert not np.array_equal(plain, styled)
    again, _ = image(lora_engine, sdxl_folder, "a red car, xl-style")
    assert np.array_equal(again, plain)
    _, sd1_on_xl = image(lora_engine, sdxl_folder, "a red car <lora:detail_tweaker:1>")
    assert sd1_on_xl.warnings == (
        "LoRA “detail_tweaker” is not applied: it is a LoRA for SD 1.x and the model is SDXL.",
    )


def test_pickled_embeddings_need_the_opt_in(tmp_path):
    import torch

    from pipelines.embeddings import describe_embedding, discover_embeddings, vectors_for
    from pipelines.errors import ModelFormatError

    path = tmp_path / "embeddings" / "old-style.pt"
    path.parent.mkdir()
    torch.save({"string_to_param": {"*": torch.randn(3, TEXT_DIM)}, "name": "old-style"}, path)
    (info,) = discover_embeddings([path.parent]).embeddings
    assert info.needs_pickle and describe_embedding(path) == info
    with pytest.raises(ModelFormatError, match="pickle"):
        vectors_for(info, (TEXT_DIM,), allow_pickle=False)
    (vectors,) = vectors_for(info, (TEXT_DIM,), allow_pickle=True)
    assert vectors.shape == (3, TEXT_DIM)
    with pytest.raises(ModelFormatError, match="reads 48"):
        vectors_for(info, (48,), allow_pickle=True)


def test_a_model_switch_frees_the_pipeline_that_had_loras(lora_root, sd1_folder, sdxl_folder):
    import gc
    import weakref

    from pipelines.engine import Engine, EngineSettings

    engine = Engine(EngineSettings(model_folders=(lora_root,), precision="fp32"))
    image(engine, sd1_folder, "a red car <lora:detail_tweaker:0.5>")
    old = weakref.ref(engine.loaded.pipeline)
    engine.load(str(sdxl_folder))
    gc.collect()
    assert old() is None


def test_a_lora_that_does_not_load_is_reported_and_leaves_the_model_as_it_was(
    lora_engine, sd1_folder, tmp_path
):
    import torch
    from safetensors.torch import save_file

    layer = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    bad = tmp_path / "wrong_shapes.safetensors"
    save_file({f"{layer}.lora_down.weight": torch.randn(4, 7),
               f"{layer}.lora_up.weight": torch.randn(64, 4)}, str(bad))  # fmt: skip
    plain, _ = image(lora_engine, sd1_folder, "a red car")
    after, result = image(lora_engine, sd1_folder, f"a red car <lora:{bad}:1>")
    (warning,) = result.warnings
    assert warning.startswith("LoRA “") and "could not be loaded (" in warning
    assert "size mismatch" in warning and "\n" not in warning
    assert result.request.lora_hashes == ""
    assert np.array_equal(after, plain)


def test_a_lora_named_twice_adds_its_weights(lora_engine, sd1_folder):
    once, _ = image(lora_engine, sd1_folder, "a red car <lora:detail_tweaker:0.8>")
    twice, result = image(
        lora_engine, sd1_folder, "a red car <lora:detail_tweaker:0.5> <lora:Detail_Tweaker:0.3>"
    )
    assert result.warnings == ()
    assert result.request.lora_hashes.count("detail_tweaker") == 1
    assert np.abs(once.astype(int) - twice.astype(int)).max() <= 1
