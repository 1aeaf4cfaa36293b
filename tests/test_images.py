import io

import pytest
import requests
from PIL import Image

from atlas.images import (
    MAX_ASPECT,
    UPLOAD_SIDE,
    ImageLimits,
    ImageRejected,
    decode_image,
    thumbnail_jpeg,
    upload_limits,
    within_aspect,
)
from pipeline.images import download


def _png(size, mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_and_thumbnail():
    img = decode_image(_png((800, 400)), ImageLimits())
    jpeg, w, h = thumbnail_jpeg(img, 256)
    assert (w, h) == (256, 128)
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"


def test_a_thin_picture_is_cut_to_its_centre_before_an_encoder_scales_it():
    """A 100000×1 picture is 177 bytes and within the pixel cap; scaling its short side to 224 would ask
    for a 22,400,000×224 picture. Encoders see its centre at MAX_ASPECT:1; the archive's own panoramas
    (up to about 10:1) are left whole."""
    from atlas.encoders.efficientnet import preprocess

    panorama = Image.new("RGB", (2560, 256))
    assert within_aspect(panorama) is panorama
    wide = Image.linear_gradient("L").resize((256, 1)).resize((100_000, 1)).convert("RGB")
    cut = within_aspect(wide)
    assert cut.size == (MAX_ASPECT, 1)
    assert cut.getpixel((0, 0)) == wide.getpixel(((100_000 - MAX_ASPECT) // 2, 0))  # the centre, not an end
    assert within_aspect(wide.transpose(Image.Transpose.ROTATE_90)).size == (1, MAX_ASPECT)
    pixels = preprocess([wide, wide.transpose(Image.Transpose.ROTATE_90)])
    assert pixels.shape == (2, 3, 224, 224)


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("PNG", "1")])
def test_an_upload_is_reduced_as_it_is_decoded_and_a_small_one_kept_as_sent(fmt, mode):
    """The encoders look at 224 pixels: an upload keeps at most UPLOAD_SIDE on its long side (a large JPEG
    decoded at a reduced scale from the start), in colour whatever its mode; the build's own pictures
    (no max_side) and uploads already small enough are decoded as they are."""
    big = Image.radial_gradient("L").resize((3000, 2000)).convert(mode)
    buf = io.BytesIO()
    big.save(buf, format=fmt)
    got = decode_image(buf.getvalue(), upload_limits())
    assert got.mode == "RGB" and got.size == (UPLOAD_SIDE, round(UPLOAD_SIDE * 2000 / 3000))
    assert decode_image(buf.getvalue(), ImageLimits()).size == (3000, 2000)
    if mode == "RGB":  # resampled, not cut or shifted: the centre of the gradient stays dark, corners light
        w, h = got.size
        assert got.getpixel((w // 2, h // 2))[0] < 40 < 200 < got.getpixel((0, 0))[0]
    small = io.BytesIO()
    Image.new("RGB", (256, 180), (200, 100, 50)).save(small, format="PNG")
    kept = decode_image(small.getvalue(), upload_limits())
    assert kept.size == (256, 180) and kept.getpixel((5, 5)) == (200, 100, 50)


def test_decompression_bomb_rejected():
    bomb = _png((12000, 12000), mode="1")  # ~150 MP, a few hundred kB compressed
    assert len(bomb) < 2_000_000
    with pytest.raises(ImageRejected, match="pixel limit|decompression bomb"):
        decode_image(bomb, ImageLimits(max_pixels=10_000_000))


def test_not_an_image_and_too_big_rejected():
    with pytest.raises(ImageRejected, match="not a JPEG, PNG, GIF or WebP picture"):
        decode_image(b"<html>hello</html>", ImageLimits())
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(jpeg, format="JPEG")
    with pytest.raises(ImageRejected, match="damaged or truncated"):
        decode_image(jpeg.getvalue()[: len(jpeg.getvalue()) // 2], ImageLimits())



@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_a_download_is_kept_only_whole_and_unaltered(fmt):
    """check_image reads a downloaded picture to its end without decoding all of it (a JPEG at a
    reduced scale, a PNG by its chunks' checksums): a torn file fails, and so does a PNG altered in
    transit, the one change a checksum catches and a cheap check could miss."""
    import numpy as np

    from atlas.images import check_image

    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format=fmt)
    data = buf.getvalue()
    check_image(data, ImageLimits())
    with pytest.raises(ImageRejected, match="damaged or truncated"):
        check_image(data[: len(data) // 2], ImageLimits())
    if fmt == "PNG":
        altered = bytearray(data)
        altered[len(data) // 2] ^= 0xFF  # inside the pixel data
        with pytest.raises(ImageRejected, match="damaged or truncated"):
            check_image(bytes(altered), ImageLimits())
        # no pixel data at all (Pillow's verify raised IndexError, which stopped a whole fetch)
        no_pixels = data[:33] + data[-12:]  # the signature and IHDR, then IEND
        assert no_pixels[12:16] == b"IHDR" and no_pixels[-8:-4] == b"IEND"
        with pytest.raises(ImageRejected):
            check_image(no_pixels, ImageLimits())
        # a picture browsers show: the closing chunk missing. Refused here, it was asked again every day
        check_image(data[:-12], ImageLimits())
    with pytest.raises(ImageRejected, match="pixel limit"):
        check_image(data, ImageLimits(max_pixels=1_000))

def _png_of_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG of these (type, data) chunks, each with its right checksum."""
    import struct
    import zlib

    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return out


def _adam7_rows(width: int, height: int, channels: int) -> bytes:
    """The raw rows of an interlaced 8-bit picture: each pass's rows, filter byte 0 first."""
    import numpy as np

    rng, raw = np.random.default_rng(1), b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        cols, rows = -(-max(width - x0, 0) // dx), -(-max(height - y0, 0) // dy)
        if cols:
            for _ in range(rows):
                raw += b"\x00" + rng.integers(0, 256, cols * channels, dtype=np.uint8).tobytes()
    return raw


def test_a_png_whose_pixel_data_is_garbage_under_right_checksums_is_refused():
    """Chunk checksums say the bytes arrived as sent, not that they are pixels: garbage in the pixel data
    under right checksums passed the download check and failed only when the images stage decoded it.
    The check inflates the pixel data (never filtering it into pixels) and counts its rows; pictures of
    every bit depth, palette and interlaced ones still pass."""
    import struct
    import zlib

    import numpy as np

    from atlas.images import check_image

    def ihdr(w, h, depth=8, colour=2, interlace=0):
        return b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)

    rng = np.random.default_rng(2)
    good_rows = b"".join(b"\x01" + rng.integers(0, 256, 30, dtype=np.uint8).tobytes() for _ in range(12))
    good = _png_of_chunks([ihdr(10, 12), (b"IDAT", zlib.compress(good_rows)), (b"IEND", b"")])
    check_image(good, ImageLimits())
    for idat in (rng.integers(0, 256, 200, dtype=np.uint8).tobytes(),  # garbage
                 zlib.compress(good_rows[:31 * 5] + b"\x09" + good_rows[31 * 5 + 1:])):  # a filter type that is none
        with pytest.raises(ImageRejected, match="damaged or truncated"):
            check_image(_png_of_chunks([ihdr(10, 12), (b"IDAT", idat), (b"IEND", b"")]), ImageLimits())
    # a row short: not whole by the inflate check, so the whole decode decides, as the images stage's
    # does: Pillow shows it (its last row blank), so it is kept
    short = _png_of_chunks([ihdr(10, 12), (b"IDAT", zlib.compress(good_rows[:-31])), (b"IEND", b"")])
    from atlas.images import _png_pixels_inflate
    assert not _png_pixels_inflate(short) and _png_pixels_inflate(good)
    check_image(short, ImageLimits())
    # split over several IDAT chunks, as encoders write large pictures: one stream
    stream = zlib.compress(good_rows)
    check_image(_png_of_chunks([ihdr(10, 12), (b"IDAT", stream[:7]), (b"IDAT", stream[7:40]), (b"IDAT", stream[40:]),
                      (b"IEND", b"")]), ImageLimits())
    interlaced = _png_of_chunks([ihdr(13, 11, interlace=1), (b"IDAT", zlib.compress(_adam7_rows(13, 11, 3))), (b"IEND", b"")])
    check_image(interlaced, ImageLimits())
    assert Image.open(io.BytesIO(interlaced)).convert("RGB").size == (13, 11)
    for mode, options in [("1", {}), ("P", {"bits": 4}), ("L", {}), ("LA", {}), ("RGBA", {}), ("I;16", {})]:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 2 if mode == "1" else 16, (37, 29), dtype=np.uint8) * (1 if mode in "1P" else 9)
                        ).convert(mode).save(buf, format="PNG", **options)
        check_image(buf.getvalue(), ImageLimits())
        assert _png_pixels_inflate(buf.getvalue()), mode  # by the inflate check, not by a whole decode


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "PPM", "ICO"])
def test_only_the_four_web_formats_are_decoded(fmt):
    """Pillow reads many more formats than people upload; bytes of any other one (whatever type the
    sender declared) never reach its decoder."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buf, format=fmt)
    assert Image.open(io.BytesIO(buf.getvalue())).format == fmt  # Pillow itself would read it
    with pytest.raises(ImageRejected, match="not a JPEG, PNG, GIF or WebP picture"):
        decode_image(buf.getvalue(), ImageLimits())
    for web in ("JPEG", "PNG", "GIF", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 40, 40)).save(buf, format=web)
        assert decode_image(buf.getvalue(), ImageLimits()).size == (32, 32)
    with pytest.raises(ImageRejected, match="byte limit"):
        decode_image(_png((10, 10)), ImageLimits(max_bytes=10))


def test_download_checks_type_and_size(http_server, tmp_path):
    png = _png((64, 64))
    http_server.routes["/ok.png"] = lambda h: h.reply(200, png, "image/png")
    http_server.routes["/page.html"] = lambda h: h.reply(200, b"<html></html>", "text/html")
    http_server.routes["/big.png"] = lambda h: h.reply(200, b"x" * 5000, "image/png")
    session = requests.Session()
    limits = ImageLimits(max_bytes=4000)
    assert download(f"{http_server.url}/ok.png", tmp_path, limits, session) == png
    # second call is served from the cache: no new request
    n = len(http_server.requests)
    assert download(f"{http_server.url}/ok.png", tmp_path, limits, session) == png
    assert len(http_server.requests) == n
    with pytest.raises(ImageRejected, match="not an image"):
        download(f"{http_server.url}/page.html", tmp_path, limits, session)
    with pytest.raises(ImageRejected, match="byte limit"):
        download(f"{http_server.url}/big.png", tmp_path, limits, session)
    with pytest.raises(ImageRejected, match="HTTP 404"):
        download(f"{http_server.url}/missing.png", tmp_path, limits, session)


def test_local_pictures_are_trusted_by_their_stamp_and_remade_when_changed(tmp_path):
    """A local source keeps its thumbnail under its stamp (path, size, times, inode); a touched file is
    hashed again (same bytes: same thumbnail, new stamp); new bytes make a new thumbnail."""
    import datetime as dt
    import os

    from lake.layout import LakeLayout
    from pipeline.images import attach_images

    layout = LakeLayout(tmp_path / "lake")
    picture = tmp_path / "p.png"
    picture.write_bytes(_png((600, 300)))
    row = {"date": dt.date(2014, 1, 1), "media_type": "image", "image_file": str(picture), "source": "bundled"}
    index, first = attach_images([dict(row)], layout, ImageLimits(), index={}, progress=False)
    stamp = index["2014-01-01"]["stamp"]
    assert first.thumbnails == 1 and stamp[:3] == [str(picture), picture.stat().st_size, picture.stat().st_mtime_ns]
    rows = [dict(row)]
    again, second = attach_images(rows, layout, ImageLimits(), index=index, progress=False)
    assert second.reused == 1 and second.thumbnails == 0 and again == index and rows[0]["image_width"] == 256
    os.utime(picture, ns=(picture.stat().st_atime_ns, picture.stat().st_mtime_ns + 10**9))  # touched only
    touched, third = attach_images([dict(row)], layout, ImageLimits(), index=index, progress=False)
    assert third.reused == 1 and third.thumbnails == 0 and touched["2014-01-01"]["stamp"] != stamp
    assert touched["2014-01-01"]["sha1"] == index["2014-01-01"]["sha1"]
    picture.write_bytes(_png((300, 600)))  # new bytes
    rows = [dict(row)]
    _, fourth = attach_images(rows, layout, ImageLimits(), index=touched, progress=False)
    assert fourth.thumbnails == 1 and (rows[0]["image_width"], rows[0]["image_height"]) == (128, 256)


def test_a_downloaded_picture_is_trusted_by_its_stamp_too(http_server, tmp_path, monkeypatch):
    """A picture downloaded by an earlier build is read from the download cache, which is stamped like a
    local file: the next build reuses its thumbnail without reading or hashing the original again
    (before, every build read and hashed each downloaded original: gigabytes for a --source nasa lake)."""
    import datetime as dt

    from atlas.hashing import sha1_text
    from lake.layout import LakeLayout
    from pipeline.images import attach_images

    png = _png((600, 300))
    http_server.routes["/p.png"] = lambda h: h.reply(200, png, "image/png")
    layout = LakeLayout(tmp_path / "lake")
    row = {"date": dt.date(2020, 1, 1), "media_type": "image", "url": f"{http_server.url}/p.png", "source": "nasa"}
    index, first = attach_images([dict(row)], layout, ImageLimits(), index={}, progress=False)
    assert first.thumbnails == 1 and len(http_server.requests) == 1
    cached = layout.download_cache / sha1_text(row["url"])
    rows = [dict(row)]
    again, second = attach_images(rows, layout, ImageLimits(), index=index, progress=False)
    assert second.reused == 1 and second.thumbnails == 0 and rows[0]["has_image"] and len(http_server.requests) == 1
    assert again["2020-01-01"]["stamp"][:2] == [str(cached), cached.stat().st_size]  # stamped: not read next time
    read = []
    real_read_bytes = type(cached).read_bytes
    monkeypatch.setattr(type(cached), "read_bytes", lambda self: read.append(self) or real_read_bytes(self))
    _, third = attach_images([dict(row)], layout, ImageLimits(), index=again, progress=False)
    assert third.reused == 1 and third.thumbnails == 0 and read == []  # nothing read, nothing hashed
