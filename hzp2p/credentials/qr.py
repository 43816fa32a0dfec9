"""QR codes of credentials: drawn with segno, read back with zxing-cpp (both from PyPI wheels).

Reading needs the optional zxing-cpp and Pillow packages (the `gateway` extra); without
them `read_png` raises QrUnavailable and callers accept the text form instead.
"""

from __future__ import annotations

import io
from pathlib import Path

import segno


class QrUnavailable(Exception):
    """No QR decoder is installed (pip install 'hzp2p[gateway]')."""


class QrUnreadable(Exception):
    """The image holds no readable QR code."""


def to_png(text: str, *, scale: int = 4) -> bytes:
    """A PNG of `text` as a QR code (error correction level M, like DCCs)."""
    buf = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


def read_png(path: str | Path) -> str:
    """The text of the first QR code in an image file."""
    try:
        import zxingcpp
        from PIL import Image
    except ImportError as exc:
        raise QrUnavailable(f"reading QR images needs zxing-cpp and Pillow ({exc.name} missing)") from None
    try:
        with Image.open(path) as img:
            found = zxingcpp.read_barcodes(img.convert("L"))
    except (OSError, ValueError) as exc:
        raise QrUnreadable(f"{path}: not a readable image ({exc})") from None
    for r in found:
        if r.format == zxingcpp.BarcodeFormat.QRCode and r.text:
            return str(r.text)
    raise QrUnreadable(f"{path}: no QR code found")
