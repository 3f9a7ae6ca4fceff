"""The freedesktop.org desktop entry: the application menu item, its icons, and "Open with" for PNGs.

Qt-free and torch-free, so ``diffusion-studio --install-desktop-entry`` works without a display.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from studio.identity import APP_ID, APP_NAME, DISTRIBUTION, SUMMARY, icon_files


def _quote_exec_argument(argument: str) -> str:
    # The Desktop Entry spec's quoting: reserved characters need double quotes, and inside them
    # ", `, $ and \ take a backslash.
    if argument and not any(c in argument for c in " \t\n\"'\\><~|&;$*?#()`="):
        return argument
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in argument)
    return f'"{escaped}"'


def desktop_entry(launcher: tuple[str, ...] = (DISTRIBUTION,)) -> str:
    command = " ".join(_quote_exec_argument(part) for part in launcher)
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        f"Name={APP_NAME}\n"
        "GenericName=Image Generator\n"
        f"Comment={SUMMARY}\n"
        f"Exec={command} %f\n"
        f"Icon={APP_ID}\n"
        "Terminal=false\n"
        "Categories=Graphics;2DGraphics;RasterGraphics;\n"
        "Keywords=Stable Diffusion;ControlNet;AI;image;generate;prompt;diffusion;\n"
        # "Open with" on a PNG restores the settings stored in it.
        "MimeType=image/png;\n"
        "StartupNotify=true\n"
    )


def launcher_command() -> tuple[str, ...]:
    """How this copy of the studio starts: the bundle's executable, the installed script, or
    ``python -m studio``."""
    if getattr(sys, "frozen", False):
        executable = Path(sys.executable).resolve()
        sibling = executable.with_name(executable.name.replace("-debug", ""))
        return (str(sibling if sibling.is_file() else executable),)
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name.startswith(DISTRIBUTION) and script.is_file():
        script = script.resolve()
        gui = script.with_name(script.name.replace("-debug", "").replace("-cli", ""))
        return (str(gui if gui.is_file() else script),)
    return (sys.executable, "-m", "studio")


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def _desktop_targets(home: Path) -> dict[Path, Path | None]:
    """Installed path → source file (None for the generated desktop entry)."""
    targets: dict[Path, Path | None] = {home / "applications" / f"{APP_ID}.desktop": None}
    hicolor = home / "icons" / "hicolor"
    for size, source in icon_files().items():
        folder = "scalable" if size == "svg" else f"{size}x{size}"
        targets[hicolor / folder / "apps" / f"{APP_ID}{source.suffix}"] = source
    return targets


def install_desktop_entry(
    home: Path | None = None, launcher: tuple[str, ...] | None = None
) -> list[Path]:
    home = home or data_home()
    written = []
    for target, source in _desktop_targets(home).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        if source is None:
            temporary.write_text(desktop_entry(launcher or launcher_command()), encoding="utf-8")
        else:
            shutil.copyfile(source, temporary)
        temporary.replace(target)
        written.append(target)
    _refresh_desktop_caches(home)
    return written


def uninstall_desktop_entry(home: Path | None = None) -> list[Path]:
    home = home or data_home()
    removed = []
    for target in _desktop_targets(home):
        if target.exists():
            target.unlink()
            removed.append(target)
    metainfo = home / "metainfo" / f"{APP_ID}.metainfo.xml"
    if metainfo.exists():
        metainfo.unlink()
        removed.append(metainfo)
    _refresh_desktop_caches(home)
    return removed


def _refresh_desktop_caches(home: Path) -> None:
    # Menus and file managers pick up a new entry sooner with fresh caches; both tools are optional.
    for command in (
        ["update-desktop-database", "-q", str(home / "applications")],
        ["gtk-update-icon-cache", "-q", "-t", "-f", str(home / "icons" / "hicolor")],
    ):
        if shutil.which(command[0]) and Path(command[-1]).is_dir():
            subprocess.run(command, check=False, capture_output=True)
