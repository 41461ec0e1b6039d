"""The image-caption pairs of ``task: multimodal_matching``: builtin:shapes and folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.data import DatasetError
from worker.imagecaptions import (
    BUILTIN,
    COLOURS,
    Pairs,
    dataset_hash,
    load_image_captions,
    parse_ppm,
    render_shapes,
)


def _images(pairs: Pairs) -> torch.Tensor:
    assert pairs.images is not None
    return pairs.images


def _seen(image: torch.Tensor) -> tuple[str, str, str, str]:
    """(size, colour, shape, corner) read back from the pixels alone."""
    mask = image.max(0).values > 0.5
    ys, xs = torch.nonzero(mask, as_tuple=True)
    side = image.shape[-1]
    colour = list(COLOURS)[int(image[:, mask].mean(1).argmax())]
    corner = ("top" if ys.float().mean() < side / 2 else "bottom") + (
        " left" if xs.float().mean() < side / 2 else " right"
    )
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    box = (bottom - top + 1) * (right - left + 1)
    middle = (top + bottom) / 2
    upper, lower = int((ys < middle).sum()), int((ys > middle).sum())
    # a triangle (point up) holds far less in its upper half than a circle does
    shape = "square" if mask.sum() == box else "triangle" if upper < 0.7 * lower else "circle"
    size = "big" if box > (0.3 * side) ** 2 else "small"
    return size, colour, shape, corner


def test_every_caption_names_what_its_image_shows() -> None:
    images, captions = render_shapes(32)
    assert images.shape == (360, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1 and len(set(captions)) == 72
    for image, text in zip(images, captions, strict=True):
        size, colour, shape, corner = _seen(image)
        assert text == f"a {size} {colour} {shape} at the {corner}"


def test_builtin_is_deterministic_and_split_by_seed() -> None:
    train, val = load_image_captions(BUILTIN, seed=5)
    again_train, again_val = load_image_captions(BUILTIN, seed=5)
    assert train.images is not None and again_train.images is not None and val.images is not None
    assert torch.equal(train.images, again_train.images) and val.captions == again_val.captions
    assert len(train.captions) == 288 and len(val.captions) == 72 and len(val.images) == 72
    _, other_val = load_image_captions(BUILTIN, seed=6)
    assert other_val.captions != val.captions
    every = {
        (tuple(i.flatten().tolist()[:8]), c)
        for p in (train, val)
        for i, c in zip(_images(p), p.captions, strict=True)
    }
    assert len(every) == 360  # the two splits share no pair
    assert dataset_hash(BUILTIN) == dataset_hash(BUILTIN) != dataset_hash(BUILTIN, size=16)


def test_without_images_nothing_is_rendered_or_read(tmp_path: Path) -> None:
    train, val = load_image_captions(BUILTIN, seed=5, with_images=False)
    with_images = load_image_captions(BUILTIN, seed=5)
    assert train.images is None and val.images is None
    assert (train.captions, val.captions) == (with_images[0].captions, with_images[1].captions)
    (tmp_path / "set").mkdir()
    rows = [{"image": "gone.ppm", "caption": "x"}, {"image": "gone.npy", "caption": "y"}]
    (tmp_path / "set" / "captions.jsonl").write_text("\n".join(map(json.dumps, rows)))
    train, val = load_image_captions("file:set", 0, 0.5, data_root=tmp_path, with_images=False)
    assert sorted(train.captions + val.captions) == ["x", "y"]  # the missing images unread


def _ppm(pixels: np.ndarray) -> bytes:
    h, w, _ = pixels.shape
    return b"P6\n# made by the test\n%d %d\n255\n" % (w, h) + pixels.astype(np.uint8).tobytes()


def test_a_folder_of_ppm_and_npy_images(tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    (folder / "img").mkdir(parents=True)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    (folder / "img" / "red.ppm").write_bytes(_ppm(red))
    blue = np.zeros((3, 4, 4), np.float32)
    blue[2] = 1.0
    np.save(folder / "img" / "blue.npy", blue)
    rows = [
        {"image": "img/red.ppm", "caption": "red"},
        {"image": "img/blue.npy", "caption": "blue"},
    ]
    (folder / "captions.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    for name in ("file:pets", "file:pets/", "file:pets/captions.jsonl"):
        train, val = load_image_captions(
            name, seed=0, validation_fraction=0.5, size=4, data_root=tmp_path
        )
        assert train.images is not None and val.images is not None
        for pairs in (train, val):
            channel = {"red": 0, "blue": 2}[pairs.captions[0]]
            assert _images(pairs).shape == (1, 3, 4, 4)
            assert torch.allclose(_images(pairs)[0, channel], torch.ones(4, 4))
            assert float(_images(pairs)[0].sum()) == pytest.approx(16)
    digest = hashlib.sha256((folder / "captions.jsonl").read_bytes())
    for rel in ("img/red.ppm", "img/blue.npy"):
        digest.update(hashlib.sha256((folder / rel).read_bytes()).digest())
    assert dataset_hash("file:pets", data_root=tmp_path) == digest.hexdigest()


def test_parse_ppm_reads_pixels_and_refuses_other_formats() -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    image = parse_ppm(_ppm(pixels))
    assert image.shape == (3, 2, 3) and torch.allclose(
        image * 255, torch.tensor(pixels).permute(2, 0, 1).float()
    )
    for bad in (
        b"P3\n1 1\n255\n0 0 0",
        b"\x89PNG\r\n",
        _ppm(pixels)[:-1],
        b"P6 1 1 65535\n\0\0\0\0\0\0",
    ):
        with pytest.raises(DatasetError, match=r"^data\.dataset: "):
            parse_ppm(bad)


@pytest.mark.parametrize(
    ("captions", "files", "says"),
    [
        ('{"image": "a.ppm", "caption": "x"}\nnope', {}, "line 2 is not JSON"),
        ('{"image": "a.jpg", "caption": "x"}\n' * 2, {}, ".png, .ppm (P6) or .npy"),
        ('{"image": "a.ppm"}\n' * 2, {}, 'exactly "image" and "caption"'),
        ('{"image": "a.ppm", "caption": " "}\n' * 2, {}, '"caption" must be'),
        ('{"image": "a.ppm", "caption": "x"}\n', {}, "has 1 pair(s)"),
        ('{"image": "a.npy", "caption": "x"}\n' * 2, {"a.npy": b"junk"}, "is not a .npy array"),
        (
            '{"image": "a.npy", "caption": "x"}\n' * 2,
            {"a.npy": np.zeros((4, 4))},
            "expected [H, W, 3]",
        ),
        (
            '{"image": "a.npy", "caption": "x"}\n' * 2,
            {"a.npy": np.full((2, 2, 3), 9.0)},
            "floats in [0, 1]",
        ),
        (
            '{"image": "a.ppm", "caption": "x"}\n' * 2,
            {"a.ppm": b"P5 1 1 255\n\0"},
            "not a binary PPM",
        ),
        ('{"image": "a.ppm", "caption": "x"}\n' * 2, {}, "not a readable file inside"),
        ('{"image": "../out.ppm", "caption": "x"}\n' * 2, {}, "not a readable file inside"),
    ],
)
def test_a_wrong_folder_names_data_dataset(
    tmp_path: Path, captions: str, files: dict[str, bytes | np.ndarray], says: str
) -> None:
    (tmp_path / "set").mkdir()
    (tmp_path / "out.ppm").write_bytes(_ppm(np.zeros((2, 2, 3))))
    (tmp_path / "set" / "captions.jsonl").write_text(captions)
    for name, content in files.items():
        if isinstance(content, bytes):
            (tmp_path / "set" / name).write_bytes(content)
        else:
            np.save(tmp_path / "set" / name, content)
    with pytest.raises(DatasetError, match=r"^data\.dataset: ") as caught:
        load_image_captions("file:set", seed=0, data_root=tmp_path)
    assert says in str(caught.value)


def test_a_folder_without_captions_and_other_schemes(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"^data\.dataset: file:empty/captions.jsonl is not"):
        load_image_captions("file:empty", seed=0, data_root=tmp_path)
    with pytest.raises(DatasetError, match=r"^data\.dataset: 'builtin:pydoc' holds no image"):
        load_image_captions("builtin:pydoc", seed=0, data_root=tmp_path)


def test_a_folder_of_png_images(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")  # an independent PNG writer
    matplotlib.use("Agg")
    import matplotlib.image as mimage

    (tmp_path / "set").mkdir()
    rows = []
    for name, channel in (("red", 0), ("green", 1), ("blue", 2)):
        pixels = np.zeros((6, 6, 3), np.uint8)
        pixels[..., channel] = 255
        mimage.imsave(tmp_path / "set" / f"{name}.PNG", pixels)
        rows.append({"image": f"{name}.PNG", "caption": f"all {name}"})
    (tmp_path / "set" / "captions.jsonl").write_text("\n".join(map(json.dumps, rows)))
    train, val = load_image_captions("file:set", seed=0, size=6, data_root=tmp_path)
    for pairs in (train, val):
        for image, text in zip(_images(pairs), pairs.captions, strict=True):
            channel = ["red", "green", "blue"].index(text.split()[1])
            assert torch.equal(image[channel], torch.ones(6, 6)) and float(image.sum()) == 36
