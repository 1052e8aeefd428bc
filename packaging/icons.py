"""Render Hearth's icon (`assets/hearth.svg`) into the files each platform's bundle needs.

    python packaging/icons.py assets/hearth.svg OUT_DIR

writes OUT_DIR/hearth-<size>.png (16 … 1024), OUT_DIR/hearth.png (256, for desktop entries),
OUT_DIR/hearth.ico (Windows) and OUT_DIR/hearth.icns (macOS). Qt renders the SVG; Pillow writes
the .ico and .icns. It runs as its own process so the build never starts Qt itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)  # .ico holds 256 at most


def render_pngs(svg: Path, out: Path) -> dict[int, Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 (Qt paints only with one)
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"error: {svg} is not an SVG image Qt can render")
    pngs = {}
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = out / f"hearth-{size}.png"
        if not image.save(str(path)):
            raise SystemExit(f"error: could not write {path}")
        pngs[size] = path
    return pngs


def make_icons(svg: Path, out: Path) -> None:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    pngs = render_pngs(svg, out)
    (out / "hearth.png").write_bytes(pngs[256].read_bytes())
    with Image.open(pngs[1024]) as large:
        large.save(out / "hearth.ico", sizes=[(size, size) for size in ICO_SIZES])
        large.save(out / "hearth.icns")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    make_icons(Path(sys.argv[1]), Path(sys.argv[2]))
