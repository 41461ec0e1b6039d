"""A small PNG reader (stdlib zlib, no Pillow) for the image folders of multimodal matching.

It reads what image tools write by default for photos and drawings: bit depth 8, grey, grey
with alpha, RGB, RGBA or a palette, not interlaced, with any of the five row filters. Alpha
is dropped (the image is shown on black); anything else raises :class:`DatasetError` naming
``data.dataset``.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch

from worker.data import DatasetError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


def decode_png(raw: bytes, where: str = "data.dataset: image") -> torch.Tensor:
    """A PNG as ``[3, H, W]`` float32 in [0, 1]."""
    if not raw.startswith(SIGNATURE):
        raise DatasetError(f"{where} is not a PNG")
    chunks = _chunks(raw, where)
    header = chunks.get(b"IHDR", [b""])[0]
    if len(header) != 13:
        raise DatasetError(f"{where}: a PNG without its IHDR header")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in CHANNELS or interlace or not width or not height:
        raise DatasetError(
            f"{where}: only 8-bit, non-interlaced PNGs are read (this one: bit depth {depth}, "
            f"colour type {colour}, interlace {interlace}); save it so, or as .ppm or .npy"
        )
    try:
        data = zlib.decompress(b"".join(chunks.get(b"IDAT", [])))
    except zlib.error:
        raise DatasetError(f"{where}: the PNG's image data is corrupt") from None
    bpp = CHANNELS[colour]
    if len(data) != height * (1 + width * bpp):
        raise DatasetError(f"{where}: the PNG's image data is cut short")
    pixels = np.frombuffer(_unfilter(data, width * bpp, bpp, where), np.uint8)
    pixels = pixels.reshape(height, width, bpp)
    return torch.from_numpy(_rgb(pixels, colour, chunks, where)).permute(2, 0, 1) / 255


def _chunks(raw: bytes, where: str) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    pos = len(SIGNATURE)
    while pos + 8 <= len(raw):
        (length,), kind = struct.unpack(">I", raw[pos : pos + 4]), raw[pos + 4 : pos + 8]
        body = raw[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise DatasetError(f"{where}: a PNG chunk is cut short")
        out.setdefault(kind, []).append(body)
        pos += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            break
    return out


def _unfilter(data: bytes, stride: int, bpp: int, where: str) -> bytes:
    """Undo each row's filter (none, sub, up, average, Paeth) of a PNG's decompressed data."""
    out = bytearray()
    prior = bytearray(stride)
    for pos in range(0, len(data), stride + 1):
        kind, row = data[pos], bytearray(data[pos + 1 : pos + 1 + stride])
        if kind == 2:
            row = bytearray(np.frombuffer(row, np.uint8) + np.frombuffer(prior, np.uint8))
        elif kind in (1, 3, 4):
            _sequential(row, prior, bpp, kind)
        elif kind != 0:
            raise DatasetError(f"{where}: unknown PNG row filter {kind}")
        out += row
        prior = row
    return bytes(out)


def _sequential(row: bytearray, prior: bytearray, bpp: int, kind: int) -> None:
    """Sub, average and Paeth read the byte just rebuilt to their left: one byte at a time."""
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        up = prior[i]
        if kind == 1:
            guess = left
        elif kind == 3:
            guess = (left + up) >> 1
        else:
            corner = prior[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            guess = left if pa <= pb and pa <= pc else up if pb <= pc else corner
        row[i] = (row[i] + guess) & 255


def _rgb(
    pixels: np.ndarray, colour: int, chunks: dict[bytes, list[bytes]], where: str
) -> np.ndarray:
    """``[H, W, 3]`` float32 0-255 from grey, grey+alpha, RGB, RGBA or palette samples."""
    if colour == 3:
        palette = np.frombuffer(chunks.get(b"PLTE", [b""])[0], np.uint8).reshape(-1, 3)
        if not len(palette) or pixels.max() >= len(palette):
            raise DatasetError(f"{where}: a palette PNG whose palette is missing or too short")
        rgb = palette[pixels[..., 0]].astype(np.float32)
    elif colour in (0, 4):
        rgb = np.repeat(pixels[..., :1], 3, axis=2).astype(np.float32)
    else:
        rgb = pixels[..., :3].astype(np.float32)
    if colour in (4, 6):  # on black
        rgb *= pixels[..., -1:].astype(np.float32) / 255
    return rgb
