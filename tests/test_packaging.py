"""Packaging: the wheel carries its resources, the desktop entry and AppStream file validate, the
desktop entry installs for one user, and --version stays free of Qt and torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from studio.about import APP_ID, ICON_SIZES, desktop_entry, install_desktop_entry
from studio.about import uninstall_desktop_entry as uninstall
from tests.imports import imported_names

ROOT = Path(__file__).resolve().parent.parent
LINUX = ROOT / "packaging" / "linux"
RESOURCES = ROOT / "resources"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def _resource_files() -> list[Path]:
    return sorted(
        p.relative_to(RESOURCES)
        for p in RESOURCES.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def test_every_importable_resource_folder_is_a_listed_package():
    # setuptools warns (and means to stop shipping them) about data folders that Python could
    # import but `packages` does not list; adding a resource folder means adding it there.
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    wanted = set()
    for relative in _resource_files():
        parts = []
        for part in relative.parent.parts:
            if not part.isidentifier():
                break
            parts.append(part)
        wanted.add(".".join(["diffusion_studio_resources", *parts]))
    missing = sorted(wanted - listed)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


# Packages kept in the source tree but out of the installed app, each on purpose.
SOURCE_ONLY_PACKAGES = {
    # The toy-world model's trainer and evaluator: run from a checkout, never imported by the app.
    "pipelines.toyworld",
}


def _python_packages() -> set[str]:
    return {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("pipelines", "studio")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_every_python_package_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = _python_packages()
    assert SOURCE_ONLY_PACKAGES <= found, "a source-only package is gone: drop it from the list"
    missing = sorted(found - listed - SOURCE_ONLY_PACKAGES)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    shipped = sorted(SOURCE_ONLY_PACKAGES & listed)
    assert not shipped, f"source-only packages listed for installation: {shipped}"


def _is_source_only(name: str) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in SOURCE_ONLY_PACKAGES)


def test_the_installed_app_never_imports_a_source_only_package():
    # Leaving a package out of the wheel is only safe while no shipped module imports it.
    offenders = []
    for top in ("pipelines", "studio"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if _is_source_only(module):
                continue
            offenders += [
                f"{module}: {name}"
                for name in imported_names(path, module, with_strings=True)
                if _is_source_only(name)
            ]
    assert not offenders, f"shipped modules that need a source-only package: {offenders}"


def test_entry_points():
    project = PYPROJECT["project"]
    assert project["gui-scripts"]["diffusion-studio"] == "studio.app:main"
    assert project["scripts"]["diffusion-studio-debug"] == "studio.logs:debug_main"
    assert project["scripts"]["diffusion-studio-cli"] == "pipelines.cli:main"
    assert "build>=1.2" in project["optional-dependencies"]["test"]


def test_icons_in_every_size():
    from PIL import Image

    icons = RESOURCES / "icons"
    assert (icons / "diffusion-studio.svg").is_file()
    for size in ICON_SIZES:
        with Image.open(icons / f"diffusion-studio-{size}.png") as image:
            assert image.size == (size, size)
            assert image.mode == "RGBA"


def test_desktop_file_is_the_generated_one():
    # packaging/linux's copy is for distributions; the installer writes the same text with the
    # absolute path of the copy that installs it.
    shipped = (LINUX / f"{APP_ID}.desktop").read_text("utf-8")
    assert shipped == desktop_entry(("diffusion-studio",))
    assert "MimeType=image/png;" in shipped
    assert f"Icon={APP_ID}\n" in shipped
    assert "Categories=Graphics;" in shipped


def test_metainfo_names_the_same_app():
    import xml.etree.ElementTree as ET

    tree = ET.parse(LINUX / f"{APP_ID}.metainfo.xml").getroot()
    assert tree.findtext("id") == APP_ID
    assert tree.findtext("launchable") == f"{APP_ID}.desktop"
    assert tree.find("screenshots/screenshot/image").text.endswith("docs/screenshot.png")
    assert (ROOT / "docs" / "screenshot.png").is_file()
    version = PYPROJECT["project"]["version"]
    assert tree.find("releases/release").get("version") == version


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="needs desktop-file-utils")
def test_desktop_file_validates():
    result = subprocess.run(
        ["desktop-file-validate", str(LINUX / f"{APP_ID}.desktop")], capture_output=True, text=True
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which("appstreamcli"), reason="needs appstream")
def test_metainfo_validates():
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(LINUX / f"{APP_ID}.metainfo.xml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_desktop_entry_installs_for_one_user(tmp_path):
    home = tmp_path / "share"
    launcher = ("/opt/Diffusion Studio/diffusion-studio",)
    written = install_desktop_entry(home, launcher)
    entry = home / "applications" / f"{APP_ID}.desktop"
    assert entry in written
    assert 'Exec="/opt/Diffusion Studio/diffusion-studio" %f\n' in entry.read_text("utf-8")
    hicolor = home / "icons" / "hicolor"
    assert (hicolor / "scalable" / "apps" / f"{APP_ID}.svg").is_file()
    for size in ICON_SIZES:
        assert (hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png").is_file()
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True)
        assert result.returncode == 0, result.stdout
    if shutil.which("appstreamcli"):
        # The entry, its icons and the metainfo checked together, as a software centre sees them.
        (home / "metainfo").mkdir()
        shutil.copy(LINUX / f"{APP_ID}.metainfo.xml", home / "metainfo")
        (tmp_path / "tree" / "usr").mkdir(parents=True)
        (tmp_path / "tree" / "usr" / "share").symlink_to(home)
        result = subprocess.run(
            ["appstreamcli", "validate-tree", "--no-net", str(tmp_path / "tree")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    removed = uninstall(home)
    assert set(written) <= set(removed)
    assert not entry.exists()


def _run_python(code: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_version_imports_neither_qt_nor_torch(tmp_path):
    code = (
        "import sys\n"
        "from studio.app import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as exit:\n    assert not exit.code\n"
        "heavy = sorted(m for m in ('PySide6', 'torch', 'diffusers', 'numpy') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    result = _run_python(code, ROOT)
    assert result.returncode == 0, result.stderr
    version = PYPROJECT["project"]["version"]
    assert result.stdout.splitlines() == [f"diffusion-studio {version}", "heavy: []"]


def test_qt_options_are_not_taken_for_files():
    from studio.app import _parse_gui_args

    args = _parse_gui_args(["-platform", "offscreen", "--style=Fusion", "-reverse", "a.png"])
    assert args.files == ["a.png"]
    assert _parse_gui_args(["--platform", "offscreen"]).files == []


def _copy_project(target: Path) -> Path:
    """The files a build reads, hard-linked (big model files cost nothing) away from the checkout,
    so building never writes build/ or egg-info into it."""

    def link(source, destination):
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pipelines", "studio", "resources"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore, copy_function=link)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """``python -m build`` (sdist, then the wheel from the sdist) of a copy of the project."""
    tmp_path = tmp_path_factory.mktemp("build")
    source = _copy_project(tmp_path / "src")
    out = tmp_path / "dist"
    # Without isolation: the build uses this environment's setuptools instead of downloading one.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "is absent from the `packages` configuration" not in result.stdout + result.stderr
    (wheel,) = out.glob("diffusion_studio-*.whl")
    (sdist,) = out.glob("diffusion_studio-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.mark.slow
def test_wheel_and_sdist_carry_the_resources(built):
    with zipfile.ZipFile(built["wheel"]) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    expected = {f"diffusion_studio_resources/{p.as_posix()}" for p in _resource_files()}
    missing = sorted(expected - names)
    assert not missing, f"resource files missing from the wheel: {missing[:20]}"
    for required in (
        "diffusion_studio_resources/configs/sd1/unet/config.json",
        "diffusion_studio_resources/tokenizers/clip/vocab.json",
        "diffusion_studio_resources/tokenizers/clip/merges.txt",
        "diffusion_studio_resources/icons/diffusion-studio.svg",
        "diffusion_studio_resources/icons/diffusion-studio-256.png",
        "pipelines/resources.py",
        "studio/app.py",
        "studio/about.py",
        "studio/logs.py",
    ):
        assert required in names
    if (RESOURCES / "models" / "toy-world").is_dir():
        assert any(n.startswith("diffusion_studio_resources/models/toy-world/") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    source_only = [n for n in names if n.startswith("pipelines/toyworld/")]
    assert not source_only, f"the toy-world training code is in the wheel: {source_only}"
    assert "diffusion-studio = studio.app:main" in entry_points
    assert "diffusion-studio-debug = studio.logs:debug_main" in entry_points
    import tarfile

    with tarfile.open(built["sdist"]) as archive:
        members = archive.getnames()
    assert any(m.endswith("resources/icons/diffusion-studio.svg") for m in members)
    assert any(m.endswith("resources/configs/sd1/unet/config.json") for m in members)
    assert not [m for m in members if "/pipelines/toyworld/" in m]


def _venv_with_dependencies_only(target: Path) -> Path:
    """A new venv that sees this environment's packages (torch, Qt, …) but not the studio itself:
    the studio must come from the wheel installed into it."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    python = target / "bin" / "python"
    new_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    mirror = target / "dependencies"
    mirror.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if name.startswith(("diffusion_studio", "__editable__")) or name.endswith(".pth"):
            continue
        (mirror / entry.name).symlink_to(entry)
    (new_site / "dependencies.pth").write_text(f"{mirror}\n", encoding="utf-8")
    return python


@pytest.mark.slow
def test_installed_wheel_runs_without_the_checkout(built, tmp_path, sd1_folder):
    """The wheel alone: --version, generate on a model, and the window, with every resource read
    from the installed package."""
    python = _venv_with_dependencies_only(tmp_path / "venv")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(built["wheel"])],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    bin_dir = python.parent
    work = tmp_path / "work"  # outside the checkout: nothing can be found beside it
    work.mkdir()
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": "",
           "DIFFUSION_STUDIO_LOG_DIR": str(work / "logs")}  # fmt: skip

    def run(*command, timeout=300):
        result = subprocess.run(
            [str(c) for c in command], cwd=work, env=env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    version = PYPROJECT["project"]["version"]
    assert run(bin_dir / "diffusion-studio", "--version").strip() == f"diffusion-studio {version}"
    where = run(python, "-c", "import pipelines.resources as r, studio; "
                "print(r.resource_root()); print(studio.__file__)").split()  # fmt: skip
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where), where
    report = run(bin_dir / "diffusion-studio-debug", "--self-check")
    assert "all present" in report and "FAIL" not in report, report

    bundled = (RESOURCES / "models" / "toy-world" / "model_index.json").is_file()
    model = [] if bundled else ["--model", sd1_folder]  # the bundled model when it is shipped
    size = [] if bundled else ["--size", "64x64"]
    run(bin_dir / "diffusion-studio-cli", "generate", "--prompt", "a red circle", *model, *size,
        "--steps", "2", "--seed", "1", "--device", "cpu", "--out", work / "out.png")  # fmt: skip
    assert (work / "out.png").stat().st_size > 0

    # The window opens from the installed package, with the tiny model, and shows its About.
    window_check = f"""
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
from studio.app import _parse_gui_args, create_window
args = _parse_gui_args(["--settings", "settings.ini", "--model", {str(sd1_folder)!r}])
app, window = create_window(args)
def check():
    from studio.about import show_about
    dialog = show_about(window)
    print("title:", window.windowTitle(), "|", dialog.windowTitle())
    print("icon:", not app.windowIcon().isNull())
    window.close()
    app.quit()
QTimer.singleShot(500, check)
app.exec()
"""
    shown = run(python, "-c", window_check)
    assert "title: Diffusion Studio | About Diffusion Studio" in shown
    assert "icon: True" in shown
