"""SD 3.x and Flux.1 ControlNets (single-kind and Union) from their diffusers folders: they change
the image, strength and start/end act, several run at once, and another family's is refused before
anything loads."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines import cli
from pipelines.errors import FamilyMismatchError, ValidationError
from pipelines.models import detect_family, discover_models
from pipelines.types import ControlKind, ControlUnit, GenerationRequest, ModelFamily


def _request(model: object, *units: ControlUnit, **changes: object) -> GenerationRequest:
    values = dict(prompt="a house", model=str(model), steps=2, seed=11, width=64, height=64,
                  cfg_scale=3.0, controls=units)  # fmt: skip
    values.update(changes)
    return GenerationRequest(**values)


def _unit(controlnet: object, image: object, kind: ControlKind = ControlKind.CANNY,
          **changes: object) -> ControlUnit:  # fmt: skip
    return ControlUnit(kind=kind, model=str(controlnet), image=str(image), **changes)


def _latents(result: object) -> np.ndarray:
    return result.latents.numpy()


def test_flow_controlnets_are_found_with_their_family(
    sd3_controlnet_folder, flux_controlnet_folder, flux_union_controlnet_folder
):
    assert detect_family(sd3_controlnet_folder) is ModelFamily.SD3
    assert detect_family(flux_union_controlnet_folder) is ModelFamily.FLUX
    found = discover_models([sd3_controlnet_folder.parent, flux_controlnet_folder.parent],
                            include_hf_cache=False)  # fmt: skip
    kinds = {(c.family, c.control_kind) for c in found.controlnets()}
    assert kinds >= {(ModelFamily.SD3, ControlKind.CANNY), (ModelFamily.FLUX, ControlKind.DEPTH)}


def test_sd3_controlnet_changes_the_image_with_strength_and_range(
    engine, sd3_folder, sd3_controlnet_folder, condition_image
):
    plain = engine.run(_request(sd3_folder))
    full = engine.run(_request(sd3_folder, _unit(sd3_controlnet_folder, condition_image)))
    off = engine.run(
        _request(sd3_folder, _unit(sd3_controlnet_folder, condition_image, strength=0.0))
    )
    late = engine.run(_request(sd3_folder, _unit(sd3_controlnet_folder, condition_image,
                                                 start=0.5)))  # fmt: skip
    again = engine.run(_request(sd3_folder, _unit(sd3_controlnet_folder, condition_image)))
    assert not np.array_equal(_latents(plain), _latents(full))
    # Its pipeline samples the control image's latents: seeded, so the seed still repeats.
    assert np.array_equal(_latents(full), _latents(again))
    assert np.allclose(_latents(plain), _latents(off), atol=1e-5)
    assert not np.array_equal(_latents(full), _latents(late))
    assert len(full.condition_maps) == 1


def test_flux_union_modes_and_two_controlnets_at_once(
    engine, flux_folder, flux_controlnet_folder, flux_union_controlnet_folder, condition_image
):
    plain = engine.run(_request(flux_folder))
    canny = engine.run(_request(flux_folder, _unit(flux_union_controlnet_folder, condition_image)))
    pose = engine.run(_request(flux_folder, _unit(flux_union_controlnet_folder, condition_image,
                                                  kind=ControlKind.POSE)))  # fmt: skip
    both = engine.run(_request(
        flux_folder,
        _unit(flux_union_controlnet_folder, condition_image),
        _unit(flux_controlnet_folder, condition_image, kind=ControlKind.DEPTH, strength=0.8),
    ))  # fmt: skip
    assert not np.array_equal(_latents(plain), _latents(canny))
    assert not np.array_equal(_latents(canny), _latents(pose))  # the mode reaches the model
    assert not np.array_equal(_latents(canny), _latents(both))
    with pytest.raises(ValidationError, match="Union ControlNet"):
        engine.run(_request(flux_folder, _unit(flux_union_controlnet_folder, condition_image,
                                               kind=ControlKind.CUSTOM)))  # fmt: skip


def test_another_familys_controlnet_is_refused(engine, flux_folder, sd3_controlnet_folder,
                                               condition_image):  # fmt: skip
    with pytest.raises(FamilyMismatchError, match="SD 3.x ControlNet but the model is Flux.1"):
        engine.run(_request(flux_folder, _unit(sd3_controlnet_folder, condition_image)))


def test_cli_family_mismatch_exits_2_with_one_line(
    sd3_folder, flux_controlnet_folder, condition_image, tmp_path, capsys
):
    code = cli.main(
        ["generate", "--prompt", "x", "--model", str(sd3_folder), "--steps", "2",
         "--size", "64x64", "--control-map", f"depth:{condition_image}",
         "--controlnet", f"depth={flux_controlnet_folder}", "--out", str(tmp_path / "x.png")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Flux.1 ControlNet" in err
    assert not (tmp_path / "x.png").exists()


def test_a_controlled_flow_comparison_runs_each_column_alone(
    engine, sd3_folder, sd3_controlnet_folder, condition_image
):
    from pipelines.compare import compare

    request = _request(sd3_folder, _unit(sd3_controlnet_folder, condition_image))
    result = compare(engine, request, ["Euler", "UniPC"])
    assert [c.lockstep for c in result.columns] == [False, False]
    for column in result.columns:
        single = engine.run(column.request)
        assert np.array_equal(column.latents.numpy(), _latents(single)), column.sampler
