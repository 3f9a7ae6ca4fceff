"""The window with a tiny Flux.1-dev model: only the samplers it can run are offered, the CFG field
is called Guidance, and generating with two samplers works end to end."""

from __future__ import annotations

from PySide6.QtCore import Qt

from pipelines.types import GenerationRequest
from studio.jobs import EventKind
from tests.studio.conftest import FAST
from tests.studio.events import wait_event


def _visible_samplers(panel: object) -> list[str]:
    items = [panel.samplers.item(i) for i in range(panel.samplers.count())]
    return [item.text() for item in items if not item.isHidden()]


def test_flux_window_offers_its_samplers_and_generates_with_two(
    qtbot, make_window, studio_settings, flux_folder
):
    studio_settings.model_folders = [str(flux_folder.parent)]
    studio_settings.last_request = GenerationRequest(
        prompt="a lighthouse", model=str(flux_folder), **{**FAST, "steps": 2, "cfg_scale": 3.5}
    ).to_dict()
    studio_settings.sync()
    window = make_window(studio_settings)
    qtbot.waitUntil(lambda: _visible_samplers(window.sampler_panel) == ["Euler", "DPM++ 2M",
                                                                          "UniPC"])  # fmt: skip
    assert window.prompt_panel.cfg_label.text() == "Guidance"
    hidden_rows = [row for row in range(window.sampler_panel.compare_table.rowCount())
                   if window.sampler_panel.compare_table.isRowHidden(row)]  # fmt: skip
    assert len(hidden_rows) == window.sampler_panel.samplers.count() - 3
    results = []
    for sampler in ("Euler", "UniPC"):
        window.sampler_panel.set_sampler(sampler)
        with wait_event(qtbot, window.session, EventKind.FINISHED, timeout=60_000) as blocker:
            qtbot.mouseClick(window.prompt_panel.generate_button, Qt.MouseButton.LeftButton)
        results.append(blocker.args[0].result)
    assert [r.request.sampler for r in results] == ["Euler", "UniPC"]
    assert all(r.request.distilled_guidance and r.request.cfg_scale == 3.5 for r in results)
    assert results[0].image.size == (64, 64)
