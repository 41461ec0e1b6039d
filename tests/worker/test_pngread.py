"""The stdlib PNG reader: checked against matplotlib's PNG files and a test-side encoder."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.data import DatasetError
from worker.pngread import decode_png


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(row: bytes, prior: bytes, bpp: int, kind: int) -> bytes:
    """PNG's forward filter ``kind`` of one row (the spec's definition, byte by byte)."""
    out = bytearray()
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b, c = prior[i], (prior[i - bpp] if i >= bpp else 0)
        guess = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
        out.append((x - guess) % 256)
    return bytes([kind]) + bytes(out)


def _png(pixels: np.ndarray, colour: int, depth: int = 8, extra: bytes = b"") -> bytes:
    """A PNG of ``pixels`` [H, W, samples] with row filters cycling through all five."""
    h, w, bpp = pixels.shape
    rows, prior = [], bytes(w * bpp)
    for y in range(h):
        row = pixels[y].astype(np.uint8).tobytes()
        rows.append(_filtered(row, prior, bpp, y % 5))
        prior = row
    header = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + extra
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )


RNG = np.random.default_rng(7)


def test_rgb_grey_alpha_and_palette_with_every_filter() -> None:
    rgb = RNG.integers(0, 256, (10, 6, 3))
    assert torch.equal(decode_png(_png(rgb, 2)), torch.tensor(rgb).permute(2, 0, 1) / 255)
    grey = RNG.integers(0, 256, (6, 4, 1))
    assert torch.equal(
        decode_png(_png(grey, 0)), torch.tensor(grey).permute(2, 0, 1).expand(3, -1, -1) / 255
    )
    rgba = RNG.integers(0, 256, (5, 5, 4))
    on_black = rgba[..., :3] * (rgba[..., 3:] / 255)
    got = decode_png(_png(rgba, 6))
    assert torch.allclose(got, torch.tensor(on_black, dtype=torch.float32).permute(2, 0, 1) / 255)
    palette = RNG.integers(0, 256, (4, 3))
    index = RNG.integers(0, 4, (5, 7, 1))
    png = _png(index, 3, extra=_chunk(b"PLTE", palette.astype(np.uint8).tobytes()))
    want = torch.tensor(palette[index[..., 0]], dtype=torch.float32).permute(2, 0, 1) / 255
    assert torch.equal(decode_png(png), want)


def test_matches_matplotlib_on_its_own_png_files(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.image as mimage
    import matplotlib.pyplot as plt

    image = RNG.integers(0, 256, (9, 13, 3)).astype(np.uint8)
    image[:, :4] = 40  # flat areas, so the writer picks other filters than for noise
    mimage.imsave(tmp_path / "a.png", image)
    figure = plt.figure(figsize=(2, 1.5), dpi=40)
    plt.plot([0, 1, 0.3], [1, 0, 0.5], "r-")
    figure.savefig(tmp_path / "b.png")
    plt.close(figure)
    for name in ("a.png", "b.png"):
        reference = torch.tensor(mimage.imread(tmp_path / name))  # [H, W, 4] floats
        reference = reference[..., :3] * reference[..., 3:]
        assert torch.allclose(
            decode_png((tmp_path / name).read_bytes()).permute(1, 2, 0), reference
        )


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"GIF89a", "is not a PNG"),
        (_png(RNG.integers(0, 256, (2, 2, 3)), 2, depth=16), "only 8-bit"),
        (_png(RNG.integers(0, 256, (2, 2, 3)), 2)[:-30], "cut short"),
        (_png(RNG.integers(0, 4, (2, 2, 1)), 3), "palette"),
        (b"\x89PNG\r\n\x1a\n" + _chunk(b"IEND", b""), "without its IHDR"),
    ],
)
def test_what_it_cannot_read_names_data_dataset(raw: bytes, says: str) -> None:
    with pytest.raises(DatasetError, match=r"^data\.dataset: ") as caught:
        decode_png(raw)
    assert says in str(caught.value)


def test_corrupt_data_and_unknown_filter() -> None:
    good = _png(RNG.integers(0, 256, (3, 3, 3)), 2)
    start = good.index(b"IDAT") + 4
    broken = good[:start] + b"\0" * 8 + good[start + 8 :]
    with pytest.raises(DatasetError, match="corrupt"):
        decode_png(broken)
    rows = b"".join(bytes([9]) + bytes(9) for _ in range(3))
    header = struct.pack(">IIBBBBB", 3, 3, 8, 2, 0, 0, 0)
    odd = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows))
    with pytest.raises(DatasetError, match="unknown PNG row filter 9"):
        decode_png(odd)
