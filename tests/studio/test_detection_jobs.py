"""Pose and depth detection are jobs of the worker: serialised with generations, reported through
the session's events, and joined when the studio quits."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from pipelines.types import ControlKind, ResizeMode
from studio.jobs import DetectionRequest, EventKind, JobKind
from studio.session import Session
from tests.studio.test_condition_editor import open_editor, photo

W, H = 64, 48

pytestmark = pytest.mark.usefixtures("no_user_annotators", "pose_renderer_imported")


@pytest.fixture
def midas_folder(tmp_path):
    folder = tmp_path / "annotators"
    folder.mkdir()
    (folder / "dpt_hybrid-midas-501f0c75.pt").write_bytes(b"found by name; never loaded here")
    return folder


@pytest.fixture
def session(qtbot):
    session = Session()
    yield session
    session.shutdown()


def ramp_depth(threads: list, delay: float = 0.0, done: list | None = None):
    def fake_depth(image, folders, *, resolution, device):
        threads.append(threading.current_thread())
        time.sleep(delay)
        ramp = np.tile(np.linspace(0, 255, image.width).astype(np.uint8), (image.height, 1))
        if done is not None:
            done.append(True)
        return Image.fromarray(ramp).convert("RGB")

    return fake_depth


def test_the_editor_detects_through_a_worker_job_and_gets_the_result_as_an_event(
    qtbot, session, midas_folder, tmp_path, monkeypatch
):
    threads = []
    monkeypatch.setattr("pipelines.conditions.detect_depth", ramp_depth(threads))
    events = []
    session.event.connect(lambda event: events.append((event.kind, event.job)))
    editor = open_editor(qtbot, tmp_path / "maps", ControlKind.DEPTH, W, H,
                         annotator_folders=[midas_folder], jobs=session)  # fmt: skip
    assert editor.open_source(photo(tmp_path / "photo.png", size=(96, 48)))

    with qtbot.waitSignal(editor.detection_finished, timeout=60_000) as blocker:
        assert editor.detect()
        assert not editor.detect_button.isEnabled()
    assert blocker.args == [True]

    assert threads and threads[0] is not threading.main_thread()  # not the GUI thread
    assert threads[0].name != "MainThread" and session.thread.isRunning()
    kinds = [kind for kind, job in events if job is not None and job.kind is JobKind.DETECT]
    assert kinds == [EventKind.QUEUED, EventKind.STARTED, EventKind.FINISHED]
    pixels = editor.document.array()
    assert not pixels[:8].any() and pixels[24, -1, 0] > 240  # fitted (letterboxed) into the map
    assert editor.detect_button.isEnabled() and not session.busy


def test_a_units_editor_in_the_window_detects_through_the_windows_session(
    qtbot, make_window, studio_settings, midas_folder, tmp_path, monkeypatch
):
    threads = []
    monkeypatch.setattr("pipelines.conditions.detect_depth", ramp_depth(threads))
    studio_settings.annotator_folders = [str(midas_folder)]
    window = make_window(studio_settings)
    unit = window.control_panel.units[0]
    unit.control.kind = ControlKind.DEPTH

    editor = unit.open_editor()
    assert editor.jobs is window.session and editor.document.width == 64  # given by the window
    assert editor.open_source(photo(tmp_path / "photo.png"))
    with qtbot.waitSignal(editor.detection_finished, timeout=60_000) as blocker:
        assert editor.detect()
    assert blocker.args == [True] and threads[0] is not threading.main_thread()
    editor.reject()


def test_a_failing_detection_job_ends_with_its_message(qtbot, session, tmp_path):
    folder = tmp_path / "annotators"
    folder.mkdir()
    (folder / "body_pose_model.pth").write_bytes(b"not a checkpoint")
    editor = open_editor(qtbot, tmp_path / "maps", ControlKind.POSE, W, H,
                         annotator_folders=[folder], jobs=session)  # fmt: skip
    assert editor.open_source(photo(tmp_path / "photo.png"))
    with qtbot.waitSignal(editor.detection_finished, timeout=60_000) as blocker:
        assert editor.detect()
    assert blocker.args == [False]
    assert "body_pose_model.pth" in editor.message.text() and "damaged" in editor.message.text()


def test_closing_the_window_during_a_detection_joins_the_worker(
    qtbot, window, midas_folder, monkeypatch
):
    threads, done = [], []
    monkeypatch.setattr("pipelines.conditions.detect_depth", ramp_depth(threads, 1.0, done))
    request = DetectionRequest(ControlKind.DEPTH, Image.new("RGB", (96, 48)), W, H,
                               ResizeMode.FIT, (str(midas_folder),))  # fmt: skip
    job = window.session.detect(request)
    assert job.kind is JobKind.DETECT and window.session.running(job.id)
    qtbot.waitUntil(lambda: bool(threads), timeout=60_000)  # inside the detector now

    window.close()  # returns once the worker thread has stopped

    assert done == [True]  # the detector ran to its end before the thread stopped
    assert not window.session.thread.isRunning()


def test_session_shutdown_during_a_detection_waits_for_it(qtbot, midas_folder, monkeypatch):
    threads, done = [], []
    monkeypatch.setattr("pipelines.conditions.detect_depth", ramp_depth(threads, 1.0, done))
    session = Session()
    request = DetectionRequest(ControlKind.DEPTH, Image.new("RGB", (96, 48)), W, H,
                               ResizeMode.FIT, (str(midas_folder),))  # fmt: skip
    session.detect(request)
    qtbot.waitUntil(lambda: bool(threads), timeout=60_000)
    session.shutdown()
    assert done == [True] and not session.thread.isRunning()


QUIT_DURING_DETECTION = """
import sys
from PIL import Image
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from pipelines.types import ControlKind, ResizeMode
from studio.jobs import DetectionRequest, EventKind
from studio.session import Session

app = QApplication([])
session = Session()
app.aboutToQuit.connect(session.shutdown)  # what the window's closeEvent does
seen = []

def on_event(event):
    seen.append(event.kind.value)
    if event.kind is EventKind.STARTED:
        QTimer.singleShot(0, app.quit)  # quit while the detector is inside torch

session.event.connect(on_event)
photo = Image.effect_noise((768, 512), 60).convert("RGB")
session.detect(DetectionRequest(ControlKind.POSE, photo, 512, 512, ResizeMode.FIT, (sys.argv[1],)))
code = app.exec()
print(",".join(seen), "running" if session.thread.isRunning() else "joined")
sys.exit(code)
"""


@pytest.fixture(scope="module")
def openpose_folder(tmp_path_factory):
    # Random weights under the standard file name run the real controlnet-aux detector code.
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.open_pose.model import bodypose_model
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("annotators") / "openpose"
    folder.mkdir()
    state = {k.split(".", 1)[1]: v.half() for k, v in bodypose_model().state_dict().items()}
    torch.save(state, folder / "body_pose_model.pth")
    return folder


@pytest.mark.slow
def test_quitting_the_process_while_the_real_detector_runs_exits_cleanly(openpose_folder):
    import os
    import subprocess
    import sys

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", QUIT_DURING_DETECTION, str(openpose_folder)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["queued,started", "joined"]
    assert "terminate called" not in done.stderr
