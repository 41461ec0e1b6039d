"""Image-caption pairs for ``task: multimodal_matching``: ``builtin:shapes`` or a folder.

``builtin:shapes`` needs no network and no image library: the worker renders each image
itself with torch, a circle, square or triangle in red, green or blue, small or big, in one of
four corners, on a noisy dark background (5 variants of each of the 72 kinds, 360 pairs, drawn
from a fixed generator, so the set never changes). Each caption names all four attributes
("a big red circle at the top left"), so matching needs the image's colour and shape as well
as the caption's words. The train/validation split is drawn by the seed.

``file:<folder>`` under REGISTRY_DATA_ROOT holds ``captions.jsonl``: one ``{"image": <path
inside the folder>, "caption": str}`` object a line. An image is an 8-bit PNG (read by
``worker/pngread.py``: Pillow is not a dependency, so JPEG is refused), a binary PPM (``P6``,
maxval 255 or less) or a ``.npy`` array (``[H, W, 3]`` or ``[3, H, W]``; uint8, or floats in
[0, 1]). Each is resized to ``size`` square.
Every file goes through ``worker.data``'s confinement to the data root. A wrong format fails
with a :class:`DatasetError` whose message starts with ``data.dataset:``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from registry.settings import DEFAULT_DATA_ROOT
from worker.data import DatasetError, _read_inside
from worker.pngread import decode_png

BUILTIN = "builtin:shapes"
CAPTIONS_FILE = "captions.jsonl"
IMAGE_SUFFIXES = (".png", ".ppm", ".npy")
COLOURS = {"red": 0, "green": 1, "blue": 2}  # the channel each colour lights
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.12, "big": 0.2}  # radius as a fraction of the side
CORNERS = {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0), "bottom right": (1, 1)}
VARIANTS = 5


@dataclass(frozen=True)
class Pairs:
    """Images ``[N, 3, H, W]`` (float32 in [0, 1]; None when not loaded) and their captions."""

    images: torch.Tensor | None
    captions: list[str]


def load_image_captions(
    dataset: str,
    seed: int,
    validation_fraction: float = 0.2,
    size: int = 32,
    data_root: str | Path = DEFAULT_DATA_ROOT,
    with_images: bool = True,
) -> tuple[Pairs, Pairs]:
    """(train, validation) pairs of ``dataset``; ``with_images=False`` reads no image at all."""
    images, captions = _pairs(dataset, size, Path(data_root), with_images)
    order = torch.randperm(len(captions), generator=torch.Generator().manual_seed(seed))
    cut = round(len(captions) * validation_fraction)
    if not 0 < cut < len(captions):
        raise DatasetError(
            f"data.dataset: {len(captions)} pairs leave a split empty at "
            f"data.validation_fraction {validation_fraction}; add pairs or change the fraction"
        )
    val, train = order[:cut], order[cut:]
    return _take(images, captions, train), _take(images, captions, val)


def dataset_hash(
    dataset: str,
    size: int = 32,
    data_root: str | Path = DEFAULT_DATA_ROOT,
    with_images: bool = True,
) -> str:
    """sha256 for provenance: of captions.jsonl then each image file's bytes, or, for the
    builtin, of the rendered pixels and the captions (without images: the captions only)."""
    digest = hashlib.sha256()
    if dataset == BUILTIN:
        images, captions = render_shapes(size) if with_images else (None, shape_captions())
        digest.update(json.dumps(captions).encode("utf-8"))
        if images is not None:
            digest.update(images.numpy().tobytes())
        return digest.hexdigest()
    folder, raw = _captions_file(dataset, Path(data_root))
    digest.update(raw)
    for rel, _ in _captions(raw, dataset) if with_images else []:
        digest.update(hashlib.sha256(_read_inside(Path(data_root), f"{folder}/{rel}")).digest())
    return digest.hexdigest()


def _take(images: torch.Tensor | None, captions: list[str], index: torch.Tensor) -> Pairs:
    picked = [captions[i] for i in index.tolist()]
    return Pairs(None if images is None else images[index], picked)


def _pairs(
    dataset: str, size: int, root: Path, with_images: bool
) -> tuple[torch.Tensor | None, list[str]]:
    if dataset == BUILTIN:
        return render_shapes(size) if with_images else (None, shape_captions())
    folder, raw = _captions_file(dataset, root)
    rows = _captions(raw, dataset)
    if not with_images:
        return None, [c for _, c in rows]
    images = [_image(_read_inside(root, f"{folder}/{rel}"), rel, dataset, size) for rel, _ in rows]
    return torch.stack(images), [c for _, c in rows]


# -- builtin:shapes ---------------------------------------------------------------------------


def _kinds() -> list[tuple[str, str, str, str]]:
    return list(itertools.product(SIZES, COLOURS, SHAPES, CORNERS))


def caption(size: str, colour: str, shape: str, corner: str) -> str:
    """The caption of one kind of image: all four attributes in words."""
    return f"a {size} {colour} {shape} at the {corner}"


def shape_captions() -> list[str]:
    """The captions of builtin:shapes, in the order of :func:`render_shapes`."""
    return [caption(*kind) for kind in _kinds() for _ in range(VARIANTS)]


def render_shapes(size: int = 32) -> tuple[torch.Tensor, list[str]]:
    """Every image of builtin:shapes as ``[360, 3, size, size]`` float32, and its captions."""
    gen = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    images = []
    for size_name, colour, shape, corner in _kinds():
        for _ in range(VARIANTS):
            jitter = (torch.rand(3, generator=gen) - 0.5) * 0.06 * size
            row, col = CORNERS[corner]
            cy, cx = (row + 0.5) * size / 2 + jitter[0], (col + 0.5) * size / 2 + jitter[1]
            r = SIZES[size_name] * size + jitter[2] * 0.3
            mask = _mask(shape, ys - cy, xs - cx, float(r))
            image = 0.1 + 0.05 * torch.randn(3, size, size, generator=gen)
            tint = torch.full((3,), 0.1) + 0.1 * torch.rand(3, generator=gen)
            tint[COLOURS[colour]] = 0.75 + 0.25 * float(torch.rand(1, generator=gen))
            image = torch.where(mask, tint[:, None, None].expand_as(image), image)
            images.append(image.clamp(0, 1))
    return torch.stack(images).float(), shape_captions()


def _mask(shape: str, dy: torch.Tensor, dx: torch.Tensor, r: float) -> torch.Tensor:
    if shape == "circle":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        return (dy.abs() <= 0.85 * r) & (dx.abs() <= 0.85 * r)
    return (dy >= -r) & (dy <= r) & (dx.abs() <= (dy + r) / 2)  # a triangle, point up


# -- file:<folder> ----------------------------------------------------------------------------


def _captions_file(dataset: str, root: Path) -> tuple[str, bytes]:
    scheme, _, name = dataset.partition(":")
    if scheme != "file" or not name.strip():
        raise DatasetError(
            f"data.dataset: {dataset!r} holds no image-caption pairs; use {BUILTIN} or "
            f"file:<a folder with {CAPTIONS_FILE} under REGISTRY_DATA_ROOT>"
        )
    folder = name.rstrip("/")
    if folder.endswith("/" + CAPTIONS_FILE) or folder == CAPTIONS_FILE:
        folder = folder[: -len(CAPTIONS_FILE)].rstrip("/") or "."
    return folder, _read_inside(root, f"{folder}/{CAPTIONS_FILE}")


def _captions(raw: bytes, dataset: str) -> list[tuple[str, str]]:
    where = f"data.dataset: {dataset}/{CAPTIONS_FILE}"
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{where} is not UTF-8 (byte {exc.start})") from None
    rows = [_row(line, f"{where} line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    if len(rows) < 2:
        raise DatasetError(f"{where} has {len(rows)} pair(s); matching needs 2 or more")
    return rows


def _row(line: str, where: str) -> tuple[str, str]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where} is not JSON ({exc.msg}); expected one object a line") from None
    if not isinstance(row, dict) or set(row) != {"image", "caption"}:
        raise DatasetError(f'{where}: expected an object with exactly "image" and "caption"')
    image, text = row["image"], row["caption"]
    if not isinstance(image, str) or not image.lower().endswith(IMAGE_SUFFIXES):
        raise DatasetError(f'{where}: "image" must name a .png, .ppm (P6) or .npy file')
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f'{where}: "caption" must be a non-empty string')
    return image, text


def _image(raw: bytes, rel: str, dataset: str, size: int) -> torch.Tensor:
    """One image file as ``[3, size, size]`` float32 in [0, 1]."""
    where = f"data.dataset: {dataset}: image {rel}"
    suffix = rel.lower().rsplit(".", 1)[-1]
    read = {"png": decode_png, "ppm": parse_ppm, "npy": _npy}[suffix]
    pixels = read(raw, where)
    image = pixels[None].float()
    if image.shape[-2:] != (size, size):
        image = torch.nn.functional.interpolate(
            image, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return image[0].clamp(0, 1)


def parse_ppm(raw: bytes, where: str = "data.dataset: image") -> torch.Tensor:
    """A binary PPM (P6) as ``[3, H, W]`` float32 in [0, 1]."""
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4 and pos < len(raw):
        if raw[pos : pos + 1] == b"#":  # a comment runs to the end of its line
            pos = raw.find(b"\n", pos) + 1 or len(raw)
        elif raw[pos : pos + 1].isspace():
            pos += 1
        else:
            end = pos
            while end < len(raw) and not raw[end : end + 1].isspace():
                end += 1
            tokens.append(raw[pos:end])
            pos = end
    if len(tokens) < 4 or tokens[0] != b"P6" or not all(t.isdigit() for t in tokens[1:]):
        raise DatasetError(f"{where} is not a binary PPM (P6 width height maxval)")
    width, height, maxval = (int(t) for t in tokens[1:])
    data = raw[pos + 1 : pos + 1 + width * height * 3]
    if not 0 < maxval < 256 or not width or not height or len(data) != width * height * 3:
        raise DatasetError(
            f"{where}: a P6 of {width}x{height}, maxval {maxval} (<= 255) is cut short"
        )
    pixels = torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(height, width, 3)
    return pixels.permute(2, 0, 1).float() / maxval


def _npy(raw: bytes, where: str) -> torch.Tensor:
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise DatasetError(f"{where} is not a .npy array") from None
    if array.ndim == 3 and array.shape[-1] == 3 and array.shape[0] != 3:
        array = array.transpose(2, 0, 1)
    if array.ndim != 3 or array.shape[0] != 3 or 0 in array.shape:
        raise DatasetError(f"{where} has shape {array.shape}; expected [H, W, 3] or [3, H, W]")
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 255)
    if (
        array.dtype.kind != "f"
        or not np.isfinite(array).all()
        or array.min() < 0
        or array.max() > 1
    ):
        raise DatasetError(f"{where}: expected uint8, or floats in [0, 1], not {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
