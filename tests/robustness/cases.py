"""Helpers shared by the fuzz tables: case ids, markers for known defects, bad input files."""

from __future__ import annotations

import json
import pickle
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin


def case(*values, id: str, unfixed: int | None = None, slow: bool = False):  # noqa: A002
    """One row of a table; ``unfixed`` names the issue 11 item whose fix it waits for."""
    marks = []
    if unfixed is not None:
        marks.append(
            pytest.mark.xfail(strict=True, reason=f"issue 11 item {unfixed} not fixed yet")
        )
    if slow:
        marks.append(pytest.mark.slow)
    return pytest.param(*values, id=id, marks=marks)


def assert_untouched(out_folder: Path) -> None:
    """The output folder holds only the file the user already had, unchanged."""
    assert sorted(p.name for p in out_folder.iterdir()) == ["existing.png"]
    assert (out_folder / "existing.png").read_bytes() == b"keep me"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )
    return path


def png_with_text(path: Path, chunks: dict[str, str], size: int = 64) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", (size, size), (40, 80, 120)).save(path, pnginfo=info)
    return path


def studio_json(request: dict) -> str:
    return json.dumps({"version": 1, "request": request})


class Payload:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def make_bad_files(folder: Path) -> dict[str, Path]:
    """Every damaged, misleading or hostile file the tables refer to, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> Path:
        path = folder / name
        path.write_bytes(data)
        files[name] = path
        return path

    good = folder / "map.png"
    edges = Image.new("RGB", (64, 64))
    for x in range(8, 56):
        edges.putpixel((x, 32), (255, 255, 255))
    edges.save(good)
    files["map.png"] = good
    whole = good.read_bytes()
    put("truncated.png", whole[: len(whole) // 2])
    put("corrupt.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    put("text.png", b"just some words, not an image\n")
    put("empty.png", b"")
    files["bomb.png"] = png_claiming_size(folder / "bomb.png", 60000, 60000)
    files["zero-size.png"] = png_claiming_size(folder / "zero-size.png", 0, 0)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(folder / "photo.jpg")
    files["photo.jpg"] = folder / "photo.jpg"
    (folder / "folder.png").mkdir(exist_ok=True)
    files["folder.png"] = folder / "folder.png"
    Image.new("RGB", (64, 64)).save(folder / "nometa.png")
    files["nometa.png"] = folder / "nometa.png"
    files["missing.png"] = folder / "missing.png"

    # Model files.
    tensor = struct.pack("<f", 1.0) * 16
    header = json.dumps({"w": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}}).encode()
    complete = struct.pack("<Q", len(header)) + header + tensor
    put("truncated.safetensors", complete[: len(complete) - 20])
    put("huge-header.safetensors", struct.pack("<Q", 10**12) + b"{" + b" " * 64)
    put("zero.safetensors", b"")
    put("text.safetensors", b"this is not a model\n" * 10)
    put("negative-header.safetensors", struct.pack("<q", -1) + b"{}")
    marker = folder / "PICKLE-WAS-LOADED"
    files["pickle-marker"] = marker
    put("payload.ckpt", pickle.dumps({"state_dict": Payload(marker)}))
    put("payload.pt", pickle.dumps(Payload(marker)))
    (folder / "empty-folder").mkdir(exist_ok=True)
    files["empty-folder"] = folder / "empty-folder"
    broken = folder / "broken-diffusers"
    broken.mkdir(exist_ok=True)
    (broken / "model_index.json").write_text("{ not json")
    files["broken-diffusers"] = broken
    put("notes.txt", b"a text file\n")
    return files


def make_metadata_pngs(folder: Path) -> dict[str, Path]:
    """PNGs whose stored settings are damaged, hostile or of the wrong types."""
    from pipelines.export import METADATA_KEY, PARAMETERS_KEY

    good = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 3}
    wrong_types = {
        "steps-text": {"steps": "abc"},
        "width-huge": {"width": 1e12},
        "sampler-number": {"sampler": 5},
        "prompt-number": {"prompt": 12345},
        "cfg-text": {"cfg_scale": "7"},
        "seed-negative": {"seed": -5},
        "seed-fraction": {"seed": 1.5},
        "steps-bool": {"steps": True},
        "controls-number": {"controls": 5},
        "controls-unknown-kind": {"controls": [{"kind": "laser", "model": "x", "image": "y"}]},
        "controls-not-objects": {"controls": [5, "canny"]},
        "memory-list": {"memory": [1, 2]},
        "preview-unknown": {"preview": "hologram"},
        "height-nan": {"height": float("nan")},
    }
    files: dict[str, Path] = {}
    for name, change in wrong_types.items():
        text = json.dumps({"version": 1, "request": {**good, **change}})
        files[f"meta-{name}.png"] = png_with_text(folder / f"meta-{name}.png", {METADATA_KEY: text})
    depth = 50_000
    nested = '{"version": 1, "request": ' + "[" * depth + "]" * depth + "}"
    extras = {
        "meta-nested.png": {METADATA_KEY: nested},
        "meta-huge.png": {METADATA_KEY: studio_json({**good, "prompt": "x" * 3_000_000})},
        "meta-request-list.png": {METADATA_KEY: '{"version": 1, "request": [1, 2]}'},
        "meta-not-json.png": {METADATA_KEY: "{{{{ not json"},
        "meta-json-array.png": {METADATA_KEY: "[1, 2, 3]"},
        "meta-params-bad-steps.png": {PARAMETERS_KEY: "a cat\nSteps: abc, Sampler: Euler, Seed: 1"},
        "meta-params-bad-size.png": {PARAMETERS_KEY: "a cat\nSteps: 5, Size: huge, Seed: 1"},
        "meta-params-empty.png": {PARAMETERS_KEY: "   "},
    }
    for name, chunks in extras.items():
        files[name] = png_with_text(folder / name, chunks)
    return files
