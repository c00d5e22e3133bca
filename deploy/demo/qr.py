"""Real QR codes: made with segno as the HES app shows them, read back as a scanner reads them.

A scanner in AIM mode sends the symbology identifier (``]Q1`` for QR), the
text it decoded and a CR. :func:`scanner_frame` does exactly that with
zxing-cpp reading a rendered image, so what reaches the validator is what a
real scanner would send, not the text the demo meant to encode.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import segno
import zxingcpp

#: The white border around the code (modules) and the pixels per module of the image.
QUIET_ZONE: Final = 4
SCALE: Final = 4
TERMINATOR: Final = b"\r"


class ScanFailed(RuntimeError):
    """The image did not read back as exactly one QR code."""


def qr_image(payload: str) -> npt.NDArray[np.uint8]:
    """A greyscale image (dark modules 0, light 255) of ``payload`` as a QR code."""
    modules = np.array(segno.make_qr(payload, error="m").matrix, dtype=np.uint8)
    light = np.where(np.pad(modules, QUIET_ZONE) > 0, 0, 255).astype(np.uint8)
    return np.kron(light, np.ones((SCALE, SCALE), dtype=np.uint8))


def read_code(image: npt.NDArray[np.uint8]) -> tuple[str, str]:
    """The ``(symbology identifier, text)`` a scanner reads from the image."""
    results = zxingcpp.read_barcodes(image)
    if len(results) != 1:
        raise ScanFailed(f"expected one code in the image, read {len(results)}")
    result = results[0]
    return str(result.symbology_identifier), str(result.text)


def scanner_frame(payload: str) -> bytes:
    """What a scanner in AIM mode sends for the QR code of ``payload``."""
    identifier, text = read_code(qr_image(payload))
    if text != payload:
        raise ScanFailed("the code read back differs from the one shown")
    return (identifier + text).encode("ascii") + TERMINATOR
