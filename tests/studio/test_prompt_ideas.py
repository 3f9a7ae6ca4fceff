"""The bundled model's guide: placeholder, prompt ideas and demo note; automatic ControlNets."""

from __future__ import annotations

import html

from pipelines.bundled_model import is_bundled_model
from pipelines.models import discover_models
from pipelines.resources import resource_path
from pipelines.types import ControlKind
from studio.widgets.control_panel import CHOOSE_CONTROLNET, ControlUnitWidget
from studio.widgets.prompt_ideas import IDEAS, NOTE, PLACEHOLDER, BundledModelGuide
from studio.widgets.prompt_panel import PromptPanel


def test_the_guide_shows_for_the_bundled_model_only(qtbot, tmp_path):
    panel = PromptPanel()
    qtbot.addWidget(panel)
    original = panel.prompt.placeholderText()
    guide = BundledModelGuide(panel.prompt)
    qtbot.addWidget(guide)
    guide.set_model("")  # "" is the bundled default
    assert not guide.isHidden() and panel.prompt.placeholderText() == PLACEHOLDER
    assert "64-pixel demo" in guide.note.text()
    guide.set_model(str(tmp_path / "real-model.safetensors"))
    assert guide.isHidden() and panel.prompt.placeholderText() == original
    guide.set_model(str(resource_path("models", "toy-world")))  # the same model by its path
    assert not guide.isHidden()
    assert is_bundled_model("") and not is_bundled_model(str(tmp_path))


def test_an_idea_fills_the_prompt(qtbot):
    panel = PromptPanel()
    qtbot.addWidget(panel)
    guide = BundledModelGuide(panel.prompt)
    qtbot.addWidget(guide)
    sections = guide.ideas.menu().actions()
    assert [a.text() for a in sections] == [title for title, _ in IDEAS]
    first = sections[0].menu().actions()[0]
    with qtbot.waitSignal(guide.idea_chosen):
        first.trigger()
    assert panel.prompt.toPlainText() == IDEAS[0][1][0]


def test_a_unit_uses_the_bundled_controlnet_of_its_kind_until_one_is_chosen(qtbot, tmp_path):
    found = discover_models([resource_path("models")], include_hf_cache=False)
    unit = ControlUnitWidget(1, tmp_path)
    qtbot.addWidget(unit)
    assert unit.model.itemText(0) == CHOOSE_CONTROLNET  # nothing known yet
    unit.set_controlnets(found.controlnets())
    assert unit.model.itemText(0) == "toy-world-controlnet-canny (automatic)"
    unit.enabled.setChecked(True)
    assert unit.unit().model == str(resource_path("models", "toy-world-controlnet-canny"))
    unit.control.kind = ControlKind.DEPTH
    assert unit.model.itemText(0) == "toy-world-controlnet-depth (automatic)"
    assert unit.unit().model.endswith("toy-world-controlnet-depth")
    unit.set_model("/cn/mine")  # a chosen one stays, whatever the kind
    unit.control.kind = ControlKind.POSE
    assert unit.unit().model == "/cn/mine"
    unit.enabled.setChecked(False)
    unit.set_model("")
    assert unit.unit() is None  # an untouched unit still stays out of the request


def test_the_window_guides_with_the_bundled_model(make_window, studio_settings, qtbot):
    from dataclasses import replace

    from pipelines.types import GenerationRequest

    request = GenerationRequest.from_dict(studio_settings.last_request)
    studio_settings.last_request = replace(request, model="").to_dict()  # the bundled default
    studio_settings.model_folders = []
    studio_settings.sync()
    window = make_window(studio_settings)
    assert not window.model_guide.isHidden()
    assert window.prompt_panel.prompt.placeholderText() == PLACEHOLDER
    unit = window.control_panel.units[0]
    assert unit.model.itemText(0) == "toy-world-controlnet-canny (automatic)"


def test_a_unit_picks_no_controlnet_that_did_not_come_with_the_model(qtbot, tmp_path):
    # The bundled ControlNets fit the bundled model's layers only: another model gets none
    # automatically (the unit asks for a choice), one beside it is taken.
    found = discover_models([resource_path("models")], include_hf_cache=False)
    unit = ControlUnitWidget(1, tmp_path)
    qtbot.addWidget(unit)
    unit.set_controlnets(found.controlnets(), str(tmp_path / "other-model.safetensors"))
    assert unit.model.itemText(0) == CHOOSE_CONTROLNET
    unit.set_controlnets(found.controlnets(), str(resource_path("models", "toy-world")))
    assert unit.model.itemText(0) == "toy-world-controlnet-canny (automatic)"


def test_the_note_warns_of_samplers_the_bundled_model_draws_noise_with(qtbot):
    panel = PromptPanel()
    qtbot.addWidget(panel)
    guide = BundledModelGuide(panel.prompt)
    qtbot.addWidget(guide)
    guide.set_run(["Euler"], 7.0)
    assert guide.warning == "" and guide.note.text() == NOTE
    guide.set_run(["LMS"], 7.0)
    assert "With LMS the bundled model draws noise at CFG 7: set CFG to 3" in guide.note.text()
    assert guide.note.text().startswith(html.escape(NOTE))  # the demo note stays
    with qtbot.waitSignal(guide.cfg_wanted) as wanted:
        guide.note.linkActivated.emit("cfg")  # the "Set CFG to 3" link
    assert wanted.args == [3.0]
    guide.set_run(["LMS"], 3.0)
    assert guide.warning == ""
    guide.set_run(["Euler", "UniPC", "Heun", "DDPM"], 7.5)
    assert guide.warning.startswith("With UniPC and DDPM the bundled model draws noise")
    guide.set_run(["UniPC", "PNDM", "LMS"], 3.0)  # PNDM needs a lower CFG than the others
    assert guide.warning.startswith(
        "With PNDM the bundled model draws noise at CFG 3: set CFG to 2 "
    )


def test_the_window_warns_as_the_sampler_or_cfg_changes(make_window, studio_settings, qtbot):
    from dataclasses import replace

    from pipelines.types import GenerationRequest

    request = GenerationRequest.from_dict(studio_settings.last_request)
    studio_settings.last_request = replace(request, model="", cfg_scale=7.0).to_dict()
    studio_settings.model_folders = []
    studio_settings.sync()
    window = make_window(studio_settings)
    panel = window.sampler_panel
    qtbot.waitUntil(lambda: panel.samplers.count() > 0)
    panel.set_sampler("LMS")
    assert "With LMS" in window.model_guide.note.text()
    window.model_guide.note.linkActivated.emit("cfg")  # "Set CFG to 3"
    assert window.prompt_panel.cfg.value() == 3.0
    assert window.model_guide.warning == ""
    window.prompt_panel.cfg.setValue(7.0)
    panel.set_sampler("Euler")
    assert window.model_guide.warning == ""
    panel.set_compare_mode(True)
    panel.set_compare_entries(["Euler", "Euler a", "Heun"])
    assert window.model_guide.warning.startswith("With Euler a the bundled model draws noise")
    panel.set_compare_mode(False)
    assert window.model_guide.warning == ""
