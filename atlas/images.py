"""Decoding untrusted picture bytes, shared by the build (downloads) and the app (uploads).

A byte cap, a pixel cap that turns Pillow's decompression-bomb warning into a rejection, and the one
list of limits for uploads, so the API and the pages refuse the same pictures with the same words.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Uploaded pictures (search by picture, galaxy upload): the largest file and the types accepted.
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
#: Largest HTTP request the app accepts: a picture of MAX_UPLOAD_BYTES sent by a page's upload box
#: arrives base64-encoded (4/3 of its bytes) inside a Dash callback's JSON.
MAX_REQUEST_BYTES = -(-MAX_UPLOAD_BYTES * 4 // 3) + 256 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
#: Longest side an upload keeps once decoded: the encoders look at 224 pixels, and a full-size copy of
#: a 40-megapixel upload (RGB, then the encoder's own) held ≈ 480 MB per request.
UPLOAD_SIDE = 1024
UPLOAD_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
#: The only formats Pillow may decode, whatever type the sender declared: every other decoder Pillow has
#: (TIFF, BMP, EPS through Ghostscript, …) stays out of reach of untrusted bytes. The archive's pictures
#: and the survey cutouts are all among them.
DECODED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
#: The longest side an encoder sees, as a multiple of the short one (the archive's longest panorama is
#: about 10:1, so no archive picture is cut).
MAX_ASPECT = 16


class ImageRejected(ValueError):
    """The bytes are not an acceptable image; the message is shown to users and in build reports."""


@dataclass
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 60_000_000
    thumb_size: int = 256
    #: With a value, pictures are reduced to at most this long side as they are decoded (a JPEG at a
    #: reduced scale from the start), before the RGB copy is made.
    max_side: int | None = None


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode untrusted bytes into an RGB image, refusing oversize, bombs and non-images."""
    img = _decoded(data, limits)
    if limits.max_side is None or max(img.size) <= limits.max_side:
        return img.convert("RGB")
    if img.mode not in ("RGB", "L"):  # resampled in colour: a palette or bilevel one is not resampled
        img = img.convert("RGB")      # at all, and one with alpha gets a premultiplied full-size copy
    img.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    return img.convert("RGB")


def check_image(data: bytes, limits: ImageLimits) -> None:
    """Raise :class:`ImageRejected` unless ``data`` is a whole picture within the limits of
    :func:`decode_image`, read to its end at the least work that still finds a torn or altered file. A
    JPEG is decoded at a reduced scale whose sides stay at least ``limits.thumb_size`` (1/8 of the work
    for a large picture). A PNG passes when its chunks read to the closing one with their checksums
    right (Pillow's ``verify``) and its pixel data inflating to exactly its rows, not filtered into
    pixels; one that does not is decoded whole, which decides (a bad checksum in a text chunk, a missing
    end chunk: pictures browsers show). GIF and WebP, which have no such check, are decoded whole. No
    RGB copy is made."""
    _decoded(data, limits, check=True)


def _png_reads_whole(data: bytes) -> bool:
    """True when every chunk of a PNG reads with its checksum right, to the closing IEND, and its pixel
    data inflates to exactly the rows its header promises (:func:`_png_pixels_inflate`)."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as img:
            img.verify()
        return _png_pixels_inflate(data)
    except Exception:  # noqa: BLE001 - whatever the failure (Pillow raises IndexError for a PNG with no
        return False   # pixel data), the whole decode decides, with the reasons people are shown


#: Channels per PNG colour type (greyscale, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 interlacing's seven passes: first column, first row, column step, row step.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
#: Inflated bytes looked at per step: the check's memory, whatever the picture's size.
_INFLATE_STEP = 1 << 20


def _png_rows(data: bytes) -> list[tuple[int, int]]:
    """(bytes per row with its filter byte, rows) of each pass of a PNG's pixel data, from its IHDR."""
    width, height = struct.unpack(">II", data[16:24])
    depth, colour, interlace = data[24], data[25], data[28]
    bits = depth * _PNG_CHANNELS[colour]
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    out = []
    for x0, y0, dx, dy in passes:
        cols, rows = -(-max(width - x0, 0) // dx), -(-max(height - y0, 0) // dy)
        if cols and rows:
            out.append((1 + -(-cols * bits // 8), rows))
    return out


def _png_pixels_inflate(data: bytes) -> bool:
    """Whether a PNG's pixel data (its IDAT chunks) is one whole zlib stream that inflates to exactly its
    rows, each starting with a filter type Pillow knows (0–4). The chunk checksums ``verify`` compares
    say the bytes arrived as sent, not that they are pixels: garbage under right checksums passed the
    check and failed only when the images stage decoded it. Inflated a step at a time and thrown away,
    never filtered into pixels, so the check costs a part of a decode and little memory."""
    rows = _png_rows(data)
    starts: list[tuple[int, int, int]] = []  # (first byte, end, stride) of each pass in the stream
    at = 0
    for stride, count in rows:
        starts.append((at, at + stride * count, stride))
        at += stride * count
    expected, seen = at, 0
    inflate = zlib.decompressobj()
    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            pending = data[pos + 8:pos + 8 + length]
            while pending:
                out = inflate.decompress(pending, _INFLATE_STEP)
                pending = inflate.unconsumed_tail
                if seen + len(out) > expected:
                    return False
                chunk = np.frombuffer(out, np.uint8)
                for first, end, stride in starts:  # the filter bytes inside this step
                    lo, hi = max(first, seen), min(end, seen + len(out))
                    if lo < hi:
                        offset = (-(lo - first)) % stride
                        if (chunk[lo - seen + offset:hi - seen:stride] > 4).any():
                            return False
                seen += len(out)
        elif kind == b"IEND":
            break
        pos += 12 + length
    return inflate.eof and seen == expected


def _decoded(data: bytes, limits: ImageLimits, *, check: bool = False) -> Image.Image:
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"image is {len(data):,} bytes, over the {limits.max_bytes:,}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=DECODED_FORMATS)
            w, h = img.size
            if w * h > limits.max_pixels:
                raise ImageRejected(f"image is {w}x{h} pixels, over the {limits.max_pixels:,}-pixel limit")
            img.seek(0)  # first frame of animated GIFs
            if check and img.format == "PNG" and _png_reads_whole(data):
                return img
            if check or limits.max_side:  # a JPEG decoded at a reduced scale: the check's, or the cap's
                img.draft("RGB", (limits.thumb_size if check else limits.max_side,) * 2)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"image rejected as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:  # its message names a Python object, nothing a person can use
        raise ImageRejected("not a JPEG, PNG, GIF or WebP picture") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageRejected):
            raise
        raise ImageRejected(f"a damaged or truncated picture ({type(exc).__name__}: {exc})") from exc
    return img


def within_aspect(img: Image.Image, *, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """The centre of ``img``, cut to at most ``max_aspect``:1, for an encoder that scales the short side
    to its input size and keeps the centre: a thin picture within the pixel cap would otherwise be
    scaled up past any memory (a 177-byte 100000×1 PNG asked for a 22,400,000×224 resize). A picture
    within the ratio is returned as it is, so its vectors do not change."""
    w, h = img.size
    short = max(1, min(w, h))
    if max(w, h) <= max_aspect * short:
        return img
    long = int(max_aspect * short)
    if w > h:
        left = (w - long) // 2
        return img.crop((left, 0, left + long, h))
    top = (h - long) // 2
    return img.crop((0, top, w, top + long))


def thumbnail_jpeg(img: Image.Image, size: int) -> tuple[bytes, int, int]:
    img = img.copy()
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue(), img.width, img.height


def upload_limits() -> ImageLimits:
    """The limits every upload form and endpoint applies."""
    return ImageLimits(max_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_UPLOAD_PIXELS, max_side=UPLOAD_SIDE)
