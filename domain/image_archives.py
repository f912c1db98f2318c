"""Image datasets: turn an uploaded zip of PNG/JPEG files and its `labels.csv` into one array.

The stored dataset is an npz file with two arrays: `image`, uint8 of shape (N, C, H, W), and the
label column. uint8 keeps the owner's pixels exactly at a quarter of float32's size; the worker
turns them into float32 when it trains, so a model sees (batch, C, H, W) floats from 0 to 255,
the layout `nn.Conv2d` expects. Grayscale images get C = 1 rather than no channel axis, so
the same model fits grayscale and colour data alike.

Nothing in the archive is trusted because it parsed: members are read into memory (never
extracted, so a name never becomes a path), their declared and decoded sizes are bounded
before anything large is allocated, and every refusal names the first offending member.
"""

from __future__ import annotations

import csv
import io
import stat
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, cast

import numpy as np
from PIL import Image

from grid_common.datafiles import DatasetFileError

ARCHIVE_SUFFIX = ".zip"
LABELS_FILE = "labels.csv"
FILE_COLUMN = "file"
IMAGE_ARRAY = "image"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Channels per accepted mode; others (palette, 16-bit, CMYK...) are refused with the fix.
ImageMode = Literal["L", "RGB", "RGBA"]
MODES: dict[str, int] = {"L": 1, "RGB": 3, "RGBA": 4}
MAX_MEMBERS = 100_000
# One image's pixels (Pillow's own bomb check starts at 89M; a dataset image is far smaller).
MAX_IMAGE_PIXELS = 4096 * 4096
# Both the members' uncompressed bytes and the decoded array: a zip bomb stops at the first.
MAX_UNPACKED_BYTES = 2 << 30
# labels.csv is parsed whole in memory: 64 MiB is some 500 bytes for each of MAX_MEMBERS lines.
MAX_LABELS_BYTES = 64 << 20
METHOD = (
    "synthetic images: every pixel an independent normal draw with the mean and standard "
    "deviation of all the owner's pixels (rounded, kept within 0-255), so no mock image is, "
    "or follows, an owner's image; label drawn from its class values"
)


@dataclass(frozen=True)
class ImageArchive:
    """What an image archive became: its label column, image mode and array shape."""

    label: str
    mode: ImageMode
    shape: tuple[int, ...]


def is_image_archive(filename: str) -> bool:
    """Whether an uploaded file's name says it is a zip of images."""
    return PurePosixPath(filename).suffix.lower() == ARCHIVE_SUFFIX


def _check_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name).parts
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or name.startswith("/")
        or ".." in parts
        or (parts and parts[0].endswith(":"))
    ):
        raise DatasetFileError(
            f"archive member {name!r} has an unsafe path: use plain relative names "
            "(no '..', no leading '/', no backslashes)"
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DatasetFileError(f"archive member {name!r} is a symbolic link: zip the files")
    if info.flag_bits & 0x1:
        raise DatasetFileError(f"archive member {name!r} is encrypted: zip it without a password")


def _members(archive: zipfile.ZipFile, max_bytes: int) -> tuple[zipfile.ZipInfo, list[str]]:
    """The labels file and the image names, after checking every member's name and size."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DatasetFileError(
            f"the archive has {len(infos):,} members; at most {MAX_MEMBERS:,} are accepted"
        )
    labels: zipfile.ZipInfo | None = None
    images: list[str] = []
    seen: set[str] = set()
    unpacked = 0
    for info in infos:
        _check_name(info)
        if info.is_dir():
            continue
        if info.filename in seen:
            raise DatasetFileError(f"archive member {info.filename!r} appears twice")
        seen.add(info.filename)
        # zipfile never reads past a member's declared size (and checks its CRC), so the sum
        # of declared sizes bounds what reading every member can unpack.
        unpacked += info.file_size
        if unpacked > max_bytes:
            raise DatasetFileError(
                f"the archive unpacks to more than {max_bytes:,} bytes (at member "
                f"{info.filename!r}): upload fewer or smaller images"
            )
        if info.filename == LABELS_FILE:
            if info.file_size > MAX_LABELS_BYTES:
                raise DatasetFileError(
                    f"{LABELS_FILE} unpacks to {info.file_size:,} bytes; at most "
                    f"{MAX_LABELS_BYTES:,} are accepted"
                )
            labels = info
        elif PurePosixPath(info.filename).suffix.lower() in IMAGE_SUFFIXES:
            images.append(info.filename)
        else:
            raise DatasetFileError(
                f"archive member {info.filename!r} is neither a PNG/JPEG image nor "
                f"{LABELS_FILE}: zip only the images and {LABELS_FILE}"
            )
    if labels is None:
        raise DatasetFileError(
            f"the archive has no {LABELS_FILE}: add one at its top level with the columns "
            f"{FILE_COLUMN},<label> naming each image and its label"
        )
    return labels, images


def _number(text: str) -> int | float | None:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return None


def _read_labels(
    data: bytes, images: list[str], label: str | None
) -> tuple[str, list[str], np.ndarray]:
    """(label column, image names in row order, labels) from `labels.csv`."""
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetFileError(f"{LABELS_FILE} is not a valid UTF-8 CSV file: {e}") from None
    rows = [row for row in rows if row]
    if not rows or len(rows[0]) != 2 or rows[0][0] != FILE_COLUMN:
        raise DatasetFileError(
            f"{LABELS_FILE} needs a header of two columns, {FILE_COLUMN},<label>, then one "
            "line per image"
        )
    column = rows[0][1].strip()
    if column in ("", FILE_COLUMN, IMAGE_ARRAY):
        raise DatasetFileError(
            f"{LABELS_FILE}'s label column is named {column!r}: name it, e.g. 'label'"
        )
    if label is not None and label != column:
        raise DatasetFileError(
            f"label {label!r} is not the label column of {LABELS_FILE}, which is {column!r}"
        )
    known = set(images)
    names: list[str] = []
    values: list[int | float] = []
    listed: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise DatasetFileError(f"{LABELS_FILE} line {line} has {len(row)} fields, not 2")
        name, text = row
        if name not in known:
            raise DatasetFileError(
                f"{LABELS_FILE} line {line} names {name!r}, which is not an image in the archive"
            )
        if name in listed:
            raise DatasetFileError(f"{LABELS_FILE} line {line} lists {name!r} a second time")
        value = _number(text.strip())
        if value is None:
            raise DatasetFileError(
                f"{LABELS_FILE} line {line} has the label {text!r}: labels must be numbers "
                "(class indices 0, 1, ... or values)"
            )
        listed.add(name)
        names.append(name)
        values.append(value)
    if not names:
        raise DatasetFileError(f"{LABELS_FILE} lists no image")
    unlisted = next((name for name in images if name not in listed), None)
    if unlisted is not None:
        raise DatasetFileError(
            f"image {unlisted!r} is not listed in {LABELS_FILE}: label it or leave it out"
        )
    kind = np.int64 if all(isinstance(v, int) for v in values) else np.float64
    return column, names, np.asarray(values, dtype=kind)


def _open(archive: zipfile.ZipFile, name: str) -> Image.Image:
    """An image, opened lazily: only its header is read."""
    data = archive.read(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetFileError(
            f"image {name!r} has too many pixels: at most {MAX_IMAGE_PIXELS:,} per image"
        ) from None
    except Exception as e:  # anything Pillow cannot identify is the uploader's file
        raise DatasetFileError(f"archive member {name!r} is not a PNG or JPEG image: {e}") from None


def _pixels(image: Image.Image, name: str) -> np.ndarray:
    """One decoded image as (C, H, W) uint8."""
    try:
        image.load()
    except Exception as e:  # truncated or corrupt data after a valid header
        raise DatasetFileError(f"image {name!r} cannot be decoded: {e}") from None
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[np.newaxis] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _check_first(image: Image.Image, name: str, count: int, max_bytes: int) -> tuple[int, ...]:
    """The array shape the first image sets, after bounding what decoding all of them costs."""
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise DatasetFileError(
            f"image {name!r} is {width}x{height}: at most {MAX_IMAGE_PIXELS:,} pixels per image"
        )
    if image.mode not in MODES:
        raise DatasetFileError(
            f"image {name!r} has mode {image.mode}: save images as grayscale (L), RGB or RGBA"
        )
    shape = (count, MODES[image.mode], height, width)
    if int(np.prod(shape)) > max_bytes:
        raise DatasetFileError(
            f"{count:,} images of {width}x{height} {image.mode} decode to more than "
            f"{max_bytes:,} bytes: upload fewer or smaller images"
        )
    return shape


def images_to_npz(
    archive_path: Path, out: Path, label: str | None, *, max_bytes: int | None = None
) -> ImageArchive:
    """Check an image archive and write its images and labels to `out` as an npz file.

    All images must share one size and mode; the first that does not is named. `label`, when
    given, must be `labels.csv`'s label column. `max_bytes` bounds both the members' unpacked
    size and the decoded array (default MAX_UNPACKED_BYTES).
    """
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetFileError(f"not a valid zip file: {e}") from None
    with archive:
        try:
            labels_info, images = _members(archive, max_bytes)
            column, names, labels = _read_labels(archive.read(labels_info), images, label)
            first = _open(archive, names[0])
            shape = _check_first(first, names[0], len(names), max_bytes)
            array = np.empty(shape, dtype=np.uint8)
            for i, name in enumerate(names):
                image = first if i == 0 else _open(archive, name)
                if image.mode != first.mode or image.size != first.size:
                    raise DatasetFileError(
                        f"image {name!r} is {image.size[0]}x{image.size[1]} {image.mode}, but "
                        f"{names[0]!r} is {first.size[0]}x{first.size[1]} {first.mode}: all "
                        "images must have the same size and mode"
                    )
                array[i] = _pixels(image, name)
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, zlib.error) as e:
            # A member's compressed data is corrupt or uses a method zipfile lacks.
            raise DatasetFileError(f"the zip file cannot be read: {e}") from None
    with out.open("wb") as fh:
        np.savez(fh, **cast(dict[str, Any], {IMAGE_ARRAY: array, column: labels}))
    return ImageArchive(label=column, mode=cast(ImageMode, first.mode), shape=shape[1:])
