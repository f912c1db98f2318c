"""Build image-dataset zips for tests: PNG/JPEG members and a labels.csv, or hostile variants."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """An image file of uint8 pixels: (H, W) grayscale or (H, W, C) colour."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A valid grayscale PNG of width x height black pixels that is only kilobytes long."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = zlib.compress(b"\x00" * ((width + 1) * height), 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated zip of `members`, in order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def labels_csv(names: list[str], labels: list[int], column: str = "label") -> bytes:
    lines = [f"file,{column}", *(f"{n},{y}" for n, y in zip(names, labels, strict=True))]
    return ("\n".join(lines) + "\n").encode()


def image_members(images: np.ndarray, labels: np.ndarray) -> dict[str, bytes]:
    """PNG members img/00000.png... for uint8 `images` plus their labels.csv."""
    names = [f"img/{i:05d}.png" for i in range(len(images))]
    members = {name: png(image) for name, image in zip(names, images, strict=True)}
    members["labels.csv"] = labels_csv(names, [int(y) for y in labels])
    return members


def digits_images(rows: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8x8 digits as uint8 images (dark ones: pixels 0 to 16) and their labels."""
    digits = load_digits()
    return digits.images[:rows].astype(np.uint8), digits.target[:rows]


def digits_zip(rows: int = 600) -> bytes:
    """The first `rows` digits as a zip of 8x8 grayscale PNGs with labels.csv."""
    return zip_bytes(image_members(*digits_images(rows)))
