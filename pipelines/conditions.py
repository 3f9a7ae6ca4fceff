"""Condition maps for ControlNet: reading images, fitting them to the generation size, Canny edges,
OpenPose skeletons and MiDaS depth.

:func:`prepare_condition` turns a :class:`~pipelines.types.ControlUnit` into the exact image the
ControlNet receives. Pose maps are drawn by controlnet-aux's own renderer so that colours and limb
widths match what the OpenPose ControlNets were trained on.

controlnet-aux is imported lazily: its package imports every detector (timm, scikit-image, ...),
which takes seconds and is not needed to load a ready-made condition map.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageOps

from pipelines.annotators import annotator_files, annotator_search_folders, find_annotator
from pipelines.errors import ModelFormatError, ValidationError
from pipelines.images import open_image
from pipelines.types import ControlKind, ControlUnit, ResizeMode

# ---------------------------------------------------------------------------------------------
# Reading and fitting images


def load_image(path: str | Path) -> Image.Image:
    """Read an image file as RGB; every way it can fail becomes an :class:`ImageReadError`."""
    with open_image(path) as opened:
        # Phone photos are stored sideways with an EXIF rotation; the map must be upright.
        image = ImageOps.exif_transpose(opened)
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB 8-bit copy of any Pillow image: 16-bit and float maps are min-max scaled, alpha lies on
    black (the "nothing here" colour of every condition map)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit depth maps use the full range; a plain convert("L") would clip them to white.
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        if high > low:
            scaled = np.round((values - low) * (255.0 / (high - low)))
        else:
            scaled = np.zeros_like(values)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")  # convert() copies even when the mode is already RGB


class Placement(NamedTuple):
    """Where a source image lands on the target: scaled to ``width`` x ``height`` with its top-left
    corner at (``left``, ``top``); negative offsets mean the overflow is cropped."""

    width: int
    height: int
    left: int
    top: int


def placement(
    src_width: int, src_height: int, width: int, height: int, mode: ResizeMode | str
) -> Placement:
    _check_size(width, height)
    _check_size(src_width, src_height)
    mode = ResizeMode(mode)
    if mode is ResizeMode.STRETCH:
        return Placement(width, height, 0, 0)
    if mode is ResizeMode.FIT:
        scale = min(width / src_width, height / src_height)
        w = min(width, max(1, round(src_width * scale)))
        h = min(height, max(1, round(src_height * scale)))
    else:
        scale = max(width / src_width, height / src_height)
        w = max(width, round(src_width * scale))
        h = max(height, round(src_height * scale))
    return Placement(w, h, (width - w) // 2, (height - h) // 2)


def fit_to_size(
    image: Image.Image,
    width: int,
    height: int,
    mode: ResizeMode | str,
    content_filter: Callable[[Image.Image], Image.Image] | None = None,
) -> Image.Image:
    """``image`` placed on a ``width`` x ``height`` black canvas by ``mode`` (see :func:`placement`).

    ``content_filter`` runs on the scaled picture before it is padded or cropped, so that the edge
    between a picture and its letterbox bars never turns into, say, a Canny edge."""
    if image.mode != "RGB":
        image = to_rgb(image)
    place = placement(image.width, image.height, width, height, mode)
    if image.size == (place.width, place.height):
        scaled = image
    else:
        scaled = image.resize((place.width, place.height), Image.Resampling.LANCZOS)
    if content_filter is not None:
        scaled = content_filter(scaled).convert("RGB")
    if place == (width, height, 0, 0):
        return scaled.copy() if scaled is image else scaled
    canvas = Image.new("RGB", (width, height))
    canvas.paste(scaled, (place.left, place.top))
    return canvas


def _check_size(width: int, height: int) -> None:
    if int(width) != width or int(height) != height or width < 1 or height < 1:
        raise ValidationError(f"An image size must be positive whole pixels, not {width}x{height}.")


# ---------------------------------------------------------------------------------------------
# Canny


def canny_map(image: Image.Image, low: int, high: int) -> Image.Image:
    """White Canny edges on black, RGB, the same size as ``image``."""
    gray = cv2.cvtColor(np.asarray(to_rgb(image)), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, int(low), int(high))
    return Image.fromarray(edges).convert("RGB")


# ---------------------------------------------------------------------------------------------
# Pose: the 18-keypoint OpenPose body model in the order controlnet-aux uses (COCO order with a
# neck point added). "Right" is the person's right, which is on the left of a figure facing us.

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "neck",
    "right shoulder",
    "right elbow",
    "right wrist",
    "left shoulder",
    "left elbow",
    "left wrist",
    "right hip",
    "right knee",
    "right ankle",
    "left hip",
    "left knee",
    "left ankle",
    "right eye",
    "left eye",
    "right ear",
    "left ear",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# Bones as 0-based keypoint index pairs, in the order the OpenPose renderer colours them; for
# editors that draw their own handles over the rendered map.
POSE_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip

# OpenPose's own BODY_25 output lists a mid-hip point at 8 and feet at 19..24; these are the BODY_25
# indices of the 18 body-model keypoints.
_BODY25_TO_BODY18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

Point = tuple[float, float]

# OpenCV draws with 32-bit integer coordinates and aborts the process beyond them, so keypoints are
# held to a range far outside any canvas but well inside that. The other limits keep a pose file
# from taking minutes to draw or from exhausting the parser.
MAX_POSE_COORDINATE = 100_000.0
MAX_POSE_PEOPLE = 100
MAX_POSE_CANVAS = 16_384
MAX_POSE_JSON_BYTES = 10_000_000


@dataclass
class PosePerson:
    """One body: :data:`NUM_KEYPOINTS` points in pixel coordinates, None for a hidden joint."""

    keypoints: list[Point | None]

    def __post_init__(self) -> None:
        if len(self.keypoints) != NUM_KEYPOINTS:
            raise ValidationError(
                f"A pose needs {NUM_KEYPOINTS} keypoints, this one has {len(self.keypoints)}."
            )
        self.keypoints = [None if p is None else (float(p[0]), float(p[1])) for p in self.keypoints]
        _check_keypoints(self.keypoints)

    def transformed(
        self, scale_x: float, scale_y: float, dx: float = 0.0, dy: float = 0.0
    ) -> PosePerson:
        return PosePerson(
            [
                None if p is None else (p[0] * scale_x + dx, p[1] * scale_y + dy)
                for p in self.keypoints
            ]
        )

    @property
    def visible(self) -> list[Point]:
        return [p for p in self.keypoints if p is not None]


def _check_keypoints(points: Iterable[Point | None], who: str = "A pose") -> None:
    for point in points:
        if point is None:
            continue
        if not all(math.isfinite(v) and abs(v) <= MAX_POSE_COORDINATE for v in point):
            raise ValidationError(
                f"{who} has a keypoint at {point[0]:g}, {point[1]:g}; keypoints must be numbers "
                f"within {MAX_POSE_COORDINATE:,.0f} pixels of the canvas origin."
            )


def _check_people_count(count: int) -> None:
    if count > MAX_POSE_PEOPLE:
        raise ValidationError(
            f"The pose has {count} people; at most {MAX_POSE_PEOPLE} can be drawn in one map."
        )


_IMPORT_LOCK = threading.Lock()


def _annotator_module(name: str) -> ModuleType:
    # The package's import registers timm models twice and trips deprecation warnings in its
    # vendored code; none of it concerns the user, so keep it out of the log.
    with _IMPORT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def render_pose(people: Iterable[PosePerson], width: int, height: int) -> Image.Image:
    """The OpenPose condition map of ``people``, drawn by controlnet-aux's body renderer."""
    _check_size(width, height)
    people = list(people)
    _check_people_count(len(people))
    for index, person in enumerate(people):
        # Keypoint lists can be changed after construction; OpenCV must never see a wild value.
        _check_keypoints(person.keypoints, f"Person {index + 1}")
    util = _annotator_module("controlnet_aux.open_pose.util")
    body = _annotator_module("controlnet_aux.open_pose.body")
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in people:
        # The renderer takes coordinates relative to the canvas, as its detector produces them.
        keypoints = [
            None if p is None else body.Keypoint(x=p[0] / width, y=p[1] / height)
            for p in person.keypoints
        ]
        canvas = util.draw_bodypose(canvas, keypoints)
    return Image.fromarray(canvas)  # the renderer's colours are RGB triples


def fit_pose_to_size(
    people: Iterable[PosePerson],
    src_width: int,
    src_height: int,
    width: int,
    height: int,
    mode: ResizeMode | str,
) -> list[PosePerson]:
    """Move keypoints found on a ``src_width`` x ``src_height`` image the way :func:`fit_to_size`
    moves its pixels, so the skeleton can be drawn at the generation size with standard limb
    widths instead of being drawn small and scaled."""
    place = placement(src_width, src_height, width, height, mode)
    sx, sy = place.width / src_width, place.height / src_height
    return [person.transformed(sx, sy, place.left, place.top) for person in people]


def pose_to_openpose_json(people: Iterable[PosePerson], width: int, height: int) -> dict[str, Any]:
    """The OpenPose JSON form in pixel coordinates; hidden joints are written as 0, 0, 0."""
    _check_size(width, height)
    entries = []
    for person in people:
        flat: list[float] = []
        for p in person.keypoints:
            flat.extend((0.0, 0.0, 0.0) if p is None else (p[0], p[1], 1.0))
        entries.append({"pose_keypoints_2d": flat})
    return {"people": entries, "canvas_width": int(width), "canvas_height": int(height)}


def pose_from_openpose_json(
    data: dict[str, Any] | list[Any] | str | bytes | Path,
    *,
    default_size: tuple[int, int] | None = None,
) -> tuple[list[PosePerson], int, int]:
    """People (pixel coordinates), canvas width and height from OpenPose JSON.

    Accepts a parsed dict, JSON text or a file path; 18-point (COCO) and 25-point (BODY_25) bodies;
    pixel or 0..1 coordinates (0..1 when every visible coordinate lies in that range). Files
    without ``canvas_width``/``canvas_height`` (OpenPose's own output) need ``default_size``.
    """
    if isinstance(data, Path):
        try:
            if data.stat().st_size > MAX_POSE_JSON_BYTES:
                raise ValidationError(
                    f"The pose file {data.name} is larger than "
                    f"{MAX_POSE_JSON_BYTES // 1_000_000} MB; a pose file is a few kilobytes."
                )
            data = data.read_bytes()
        except OSError as exc:
            raise ValidationError(f"Cannot read the pose file {data}: {exc}") from None
    if isinstance(data, str | bytes | bytearray):
        if len(data) > MAX_POSE_JSON_BYTES:
            raise ValidationError(
                f"The pose JSON is larger than {MAX_POSE_JSON_BYTES // 1_000_000} MB; "
                "a pose file is a few kilobytes."
            )
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValidationError(f"The pose file is not valid JSON: {exc}") from None
        except RecursionError:
            raise ValidationError("The pose JSON is nested too deeply to be a pose.") from None
    if isinstance(data, list):
        # Some tools (ComfyUI's pose nodes) save one entry per frame; a condition map is one frame.
        if not data:
            raise ValidationError("The pose file holds an empty list, no pose.")
        data = data[0]
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise ValidationError('The pose JSON has no "people" list.')
    _check_people_count(len(data["people"]))

    raw_people: list[list[tuple[float, float, float]]] = []
    for index, entry in enumerate(data["people"]):
        flat = entry.get("pose_keypoints_2d") if isinstance(entry, dict) else None
        if not isinstance(flat, list):
            raise ValidationError(
                f'Person {index + 1} in the pose JSON has no "pose_keypoints_2d".'
            )
        if not flat:
            continue
        if len(flat) not in (NUM_KEYPOINTS * 3, 25 * 3):
            raise ValidationError(
                f"Person {index + 1} has {len(flat)} keypoint values; expected "
                f"{NUM_KEYPOINTS * 3} (18-point body) or 75 (BODY_25)."
            )
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
            raise ValidationError(f"Person {index + 1} has keypoint values that are not numbers.")
        values = [float(v) for v in flat]
        if not all(math.isfinite(v) for v in values):
            raise ValidationError(f"Person {index + 1} has keypoint values that are not finite.")
        _check_keypoints(zip(values[0::3], values[1::3], strict=True), f"Person {index + 1}")
        triples = [tuple(values[i : i + 3]) for i in range(0, len(values), 3)]
        if len(triples) == 25:
            triples = [triples[i] for i in _BODY25_TO_BODY18]
        raw_people.append(triples)  # type: ignore[arg-type]

    width, height = _canvas_size(data, default_size)
    visible = [(x, y) for person in raw_people for x, y, c in person if c > 0]
    normalised = bool(visible) and all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in visible)
    sx, sy = (width, height) if normalised else (1.0, 1.0)
    people = [
        PosePerson([(x * sx, y * sy) if c > 0 else None for x, y, c in person])
        for person in raw_people
    ]
    return people, width, height


def _canvas_size(data: dict[str, Any], default: tuple[int, int] | None) -> tuple[int, int]:
    raw = (data.get("canvas_width"), data.get("canvas_height"))
    if raw == (None, None):
        if default is None:
            raise ValidationError(
                "The pose JSON does not say its canvas size (canvas_width, canvas_height)."
            )
        return int(default[0]), int(default[1])
    try:
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in raw):
            raise TypeError
        width, height = (int(v) for v in raw)  # type: ignore[arg-type]
        if (width, height) != raw or width < 1 or height < 1:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(
            f"The pose JSON's canvas size must be two positive whole numbers, not {raw}."
        ) from None
    if width > MAX_POSE_CANVAS or height > MAX_POSE_CANVAS:
        raise ValidationError(
            f"The pose JSON's canvas is {width}x{height}; at most {MAX_POSE_CANVAS} pixels a side."
        )
    return width, height


def _figure(*body: Point) -> PosePerson:
    # Presets list the 14 body joints; eyes and ears follow from the nose of a figure facing us.
    nose_x, nose_y = body[0]
    face = (
        (nose_x - 0.018, nose_y - 0.016),
        (nose_x + 0.018, nose_y - 0.016),
        (nose_x - 0.042, nose_y - 0.004),
        (nose_x + 0.042, nose_y - 0.004),
    )
    return PosePerson([*body, *face])


# Shapes in 0..1 coordinates of a square; preset_pose() fits each figure to the canvas.
# Joint order: nose, neck, R shoulder/elbow/wrist, L shoulder/elbow/wrist, R hip/knee/ankle,
# L hip/knee/ankle.
POSE_PRESETS: dict[str, list[PosePerson]] = {
    "standing": [
        _figure(
            (0.50, 0.12), (0.50, 0.22),
            (0.41, 0.23), (0.38, 0.37), (0.37, 0.50),
            (0.59, 0.23), (0.62, 0.37), (0.63, 0.50),
            (0.45, 0.50), (0.45, 0.69), (0.45, 0.88),
            (0.55, 0.50), (0.55, 0.69), (0.55, 0.88),
        )
    ],
    "walking": [
        _figure(
            (0.50, 0.12), (0.50, 0.22),
            (0.42, 0.23), (0.37, 0.36), (0.34, 0.47),
            (0.58, 0.23), (0.63, 0.35), (0.68, 0.44),
            (0.46, 0.50), (0.41, 0.68), (0.36, 0.87),
            (0.54, 0.50), (0.58, 0.68), (0.64, 0.86),
        )
    ],
    "sitting": [  # three-quarter view, facing the viewer's right
        _figure(
            (0.49, 0.13), (0.46, 0.25),
            (0.40, 0.26), (0.41, 0.40), (0.52, 0.47),
            (0.52, 0.26), (0.55, 0.40), (0.64, 0.47),
            (0.42, 0.55), (0.60, 0.57), (0.59, 0.84),
            (0.50, 0.55), (0.68, 0.57), (0.67, 0.84),
        )
    ],
    "arms up": [
        _figure(
            (0.50, 0.17), (0.50, 0.27),
            (0.41, 0.28), (0.36, 0.16), (0.34, 0.04),
            (0.59, 0.28), (0.64, 0.16), (0.66, 0.04),
            (0.45, 0.55), (0.45, 0.74), (0.45, 0.93),
            (0.55, 0.55), (0.55, 0.74), (0.55, 0.93),
        )
    ],
}  # fmt: skip


def preset_pose(name: str, width: int, height: int, margin: float = 0.08) -> list[PosePerson]:
    """A preset in pixel coordinates, as large as fits with ``margin`` (fraction of each side) and
    centred, keeping the figure's proportions whatever the canvas aspect."""
    _check_size(width, height)
    try:
        people = POSE_PRESETS[name]
    except KeyError:
        known = ", ".join(POSE_PRESETS)
        raise ValidationError(f"Unknown pose preset {name!r}; presets: {known}.") from None
    points = [p for person in people for p in person.visible]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    scale = min(width * (1 - 2 * margin) / span_x, height * (1 - 2 * margin) / span_y)
    dx = width / 2 - (min(xs) + span_x / 2) * scale
    dy = height / 2 - (min(ys) + span_y / 2) * scale
    return [person.transformed(scale, scale, dx, dy) for person in copy.deepcopy(people)]


# ---------------------------------------------------------------------------------------------
# Detectors (controlnet-aux, weights from local folders only)

_DETECTORS: dict[tuple[str, Path, str], Any] = {}
_DETECTOR_LOCK = threading.Lock()


def _detector(kind: str, annotator_folders: Iterable[Path | str], device: str) -> Any:
    folder = find_annotator(kind, annotator_search_folders(annotator_folders))
    key = (kind, folder.resolve(), str(device))
    with _DETECTOR_LOCK:
        if key not in _DETECTORS:
            # Keep one detector per kind: a MiDaS model holds half a gigabyte.
            for stale in [k for k in _DETECTORS if k[0] == kind]:
                del _DETECTORS[stale]
            _DETECTORS[key] = _load_detector(kind, folder, device)
        return _DETECTORS[key]


def unload_detectors() -> None:
    with _DETECTOR_LOCK:
        _DETECTORS.clear()


def _load_detector(kind: str, folder: Path, device: str) -> Any:
    path = folder / annotator_files(kind)[0]
    if kind == "openpose":
        open_pose = _annotator_module("controlnet_aux.open_pose")
        body = _annotator_module("controlnet_aux.open_pose.body")
    else:
        midas = _annotator_module("controlnet_aux.midas")
    _refuse_pickled_code(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "openpose":
                # Only the body network: hand and face models would be loaded for nothing (and
                # OpenposeDetector.to() assumes all three, so move the body network alone).
                return open_pose.OpenposeDetector(body.Body(str(path)).to(device))
            return midas.MidasDetector.from_pretrained(str(folder)).to(device)
    except Exception as exc:  # unpickling, a state-dict mismatch, a truncated download, ...
        raise ModelFormatError(
            f"{path} could not be loaded as the {kind} annotator ({type(exc).__name__}: {exc}). "
            "It may be damaged or a different model; download it again."
        ) from exc


def _refuse_pickled_code(path: Path) -> None:
    # controlnet-aux calls torch.load() without weights_only. From torch 2.6 on that defaults to
    # weights_only=True, so a file that smuggles code is refused; older torch would run it, so check
    # the file the safe way first there.
    import torch

    if torch.__version__ >= (2, 6):
        return
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFormatError(
            f"{path} holds more than plain weights and is not loaded, for safety: {exc}"
        ) from exc


def detect_pose(
    image: Image.Image,
    annotator_folders: Iterable[Path | str] = (),
    *,
    resolution: int = 512,
    device: str = "cpu",
) -> list[PosePerson]:
    """Bodies found in ``image`` by the OpenPose body network, in the image's pixel coordinates.

    ``annotator_folders`` are searched before the usual places (see
    :func:`pipelines.annotators.annotator_search_folders`). An empty list means nobody was found.
    """
    detector = _detector("openpose", annotator_folders, device)
    aux_util = _annotator_module("controlnet_aux.util")
    rgb = np.asarray(to_rgb(image))
    height, width = rgb.shape[:2]
    # The detector works at a fixed short side like its own __call__; it reports 0..1 coordinates.
    resized = aux_util.resize_image(aux_util.HWC3(rgb), resolution)
    poses = detector.detect_poses(resized)
    return [
        PosePerson(
            [
                None if k is None else (float(k.x) * width, float(k.y) * height)
                for k in pose.body.keypoints
            ]
        )
        for pose in poses
    ]


def detect_depth(
    image: Image.Image,
    annotator_folders: Iterable[Path | str] = (),
    *,
    resolution: int = 512,
    device: str = "cpu",
) -> Image.Image:
    """MiDaS (DPT-Hybrid) relative depth of ``image``: near is bright, RGB 8-bit, same size."""
    detector = _detector("depth", annotator_folders, device)
    rgb = to_rgb(image)
    depth = detector(
        rgb, detect_resolution=resolution, image_resolution=resolution, output_type="pil"
    )
    return depth.convert("RGB").resize(rgb.size, Image.Resampling.BILINEAR)


# ---------------------------------------------------------------------------------------------
# The map a ControlNet receives


def detection_resolution(width: int, height: int) -> int:
    """The size the pose and depth networks look at: near the generation size ("pixel perfect"),
    capped where the networks gain nothing."""
    return max(64, min(512, int(width), int(height)))


@dataclass(frozen=True)
class DetectedMap:
    """What :func:`detect_map` found, at the requested size: the map itself for canny and depth,
    the people for pose (editable before :func:`render_pose` draws them)."""

    kind: ControlKind
    image: Image.Image | None = None
    people: tuple[PosePerson, ...] = ()


def detect_map(
    kind: ControlKind | str,
    image: Image.Image,
    width: int,
    height: int,
    resize_mode: ResizeMode | str = ResizeMode.FIT,
    annotator_folders: Iterable[Path | str] = (),
    *,
    canny: tuple[int, int] = (100, 200),
    device: str = "cpu",
) -> DetectedMap:
    """Turn a photo into the ``kind``'s condition at ``width`` x ``height``, fitted by
    ``resize_mode``: what the ControlNet receives when its unit runs the preprocessor.

    ``device`` runs the pose/depth networks (cached per kind, folder and device)."""
    kind = ControlKind(kind)
    mode = ResizeMode(resize_mode)
    _check_size(width, height)
    if kind is ControlKind.CANNY:
        low, high = sorted(canny)
        # Edges are found at the generation size so their width matches what the model expects.
        edges = fit_to_size(image, width, height, mode, lambda im: canny_map(im, low, high))
        return DetectedMap(kind, image=edges)
    resolution = detection_resolution(width, height)
    if kind is ControlKind.POSE:
        people = detect_pose(image, annotator_folders, resolution=resolution, device=device)
        fitted = fit_pose_to_size(people, image.width, image.height, width, height, mode)
        return DetectedMap(kind, people=tuple(fitted))
    if kind is ControlKind.DEPTH:
        depth = detect_depth(image, annotator_folders, resolution=resolution, device=device)
        return DetectedMap(kind, image=fit_to_size(depth, width, height, mode))
    raise ValidationError(f"No preprocessor for {kind.value} control units.")


def prepare_condition(
    unit: ControlUnit,
    width: int,
    height: int,
    annotator_folders: Sequence[Path | str] = (),
    *,
    device: str = "cpu",
) -> Image.Image:
    """The exact ``width`` x ``height`` RGB map the unit's ControlNet receives.

    ``device`` runs the pose/depth networks (they are cached per kind, folder and device).
    """
    if not unit.image:
        raise ValidationError(f"The {ControlKind(unit.kind).value} control unit has no image.")
    image = load_image(unit.image)
    kind = ControlKind(unit.kind)
    mode = ResizeMode(unit.resize_mode)
    if not unit.preprocess or kind is ControlKind.CUSTOM:
        return fit_to_size(image, width, height, mode)
    detected = detect_map(kind, image, width, height, mode, annotator_folders,
                          canny=(unit.canny_low, unit.canny_high), device=device)  # fmt: skip
    if detected.image is not None:
        return detected.image
    return render_pose(detected.people, width, height)
