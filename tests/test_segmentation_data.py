"""Semantic segmentation data (D2L 13.9): VOC's colour map to labels against the book's
per-pixel look-up written as a loop, the VOC reader on a tree of real formats the test writes
(JPEG photographs, RGB and palette PNG labels, the image lists, the d2l tar), the joint random
crop, and the generated stand-in written in VOC's layout."""

import tarfile

import numpy as np
import pytest
from PIL import Image

from dlrun.core.config import ConfigError, load_config
from dlrun.core.config.segmentation import GeneratedVOC, VOCData
from dlrun.core.data import load_dataset
from dlrun.core.data.segmentation import CLASS_COLOURS, write_generated_voc
from dlrun.core.data.voc import VOC_CLASSES, VOC_COLORMAP, colormap_to_label, label_indices, rand_crop, read_split
from dlrun.core.errors import DataNotFoundError

from .conftest import CONFIGS


def voc_palette(n: int = 21) -> list[tuple[int, int, int]]:
    """VOC's colour map as its development kit makes it: the bits of the class index spread
    over the high bits of red, green and blue, three at a time."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


def test_the_colour_map_is_vocs_and_names_its_classes():
    assert list(VOC_COLORMAP) == voc_palette()
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background" and VOC_CLASSES[15] == "person"


def test_colours_map_to_labels_as_the_books_look_up_does():
    """Each pixel's class is the index of its colour in VOC_COLORMAP; any other colour is 0."""
    rng = np.random.default_rng(0)
    h, w = 9, 11
    picks = rng.integers(0, 21, (h, w))
    rgb = np.asarray(VOC_COLORMAP, np.uint8)[picks]
    stray = rng.random((h, w)) < 0.3  # colours of no class, VOC's border (224, 224, 192) among them
    rgb[stray] = rng.integers(0, 256, (int(stray.sum()), 3))
    stray[0, 0], rgb[0, 0] = True, (224, 224, 192)
    expected = np.zeros((h, w), np.int64)
    for i in range(h):
        for j in range(w):
            colour = tuple(int(v) for v in rgb[i, j])
            expected[i, j] = VOC_COLORMAP.index(colour) if colour in VOC_COLORMAP else 0
    np.testing.assert_array_equal(label_indices(rgb, colormap_to_label()), expected)
    assert (expected[~stray] == picks[~stray]).all() and expected[0, 0] == 0


def test_the_joint_crop_cuts_image_and_labels_at_one_window_drawn_uniformly():
    h, w, ch, cw = 7, 9, 3, 4
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    feature = np.stack([rows, cols, rows * 0], -1).astype(np.float32)
    label = rows * 100 + cols
    rng = np.random.default_rng(1)
    corners = set()
    for _ in range(400):
        f, lab = rand_crop(rng, feature, label, ch, cw)
        assert f.shape == (ch, cw, 3) and lab.shape == (ch, cw)
        np.testing.assert_array_equal(f[..., 0] * 100 + f[..., 1], lab)  # the image's pixel under each label
        top, left = divmod(int(lab[0, 0]), 100)
        np.testing.assert_array_equal(lab, label[top:top + ch, left:left + cw])
        corners.add((top, left))
    assert corners == {(t, l) for t in range(h - ch + 1) for l in range(w - cw + 1)}  # every window is drawn
    with pytest.raises(ValueError, match="smaller than"):
        rand_crop(rng, feature, label, h + 1, cw)


def write_tiny_voc(root, palette_png: bool = False):
    """A VOC tree written with Pillow directly: train lists a 24x30, a 20x40 and a 12x30 image
    (lower than a 16x24 crop: left out), val an 18x26 one. Each photograph shows its labels'
    colours; returns the tree and each image's decoded pixels and labels."""
    rng = np.random.default_rng(7)
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    sizes = {"train": [("a", 24, 30), ("b", 20, 40), ("small", 12, 30)], "val": [("v", 18, 26)]}
    truth = {}
    for split, items in sizes.items():
        for name, h, w in items:
            labels = np.kron(rng.integers(0, 21, (h // 2 + 1, w // 2 + 1)), np.ones((2, 2), int))[:h, :w]
            photo = np.asarray(VOC_COLORMAP, np.uint8)[labels]  # the photograph shows each label's colour
            Image.fromarray(photo).save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
            if palette_png:  # as VOC ships them: palette images, 255 the cream border
                border = labels.copy().astype(np.uint8)
                border[0, :] = 255
                image = Image.fromarray(border)
                image.putpalette([v for c in VOC_COLORMAP for v in c] + [0] * 3 * (255 - 21) + [224, 224, 192])
                image.save(voc / "SegmentationClass" / f"{name}.png")
                labels = labels.copy()
                labels[0, :] = 0
            else:
                Image.fromarray(np.asarray(VOC_COLORMAP, np.uint8)[labels]).save(voc / "SegmentationClass" / f"{name}.png")
            with Image.open(voc / "JPEGImages" / f"{name}.jpg") as im:
                truth[name] = (np.asarray(im.convert("RGB")), labels)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(n for n, _, _ in items) + "\n")
    return voc, truth


def window_of(labels: np.ndarray, crop: np.ndarray) -> tuple[int, int]:
    """The one (top, left) at which `crop` lies in `labels`."""
    ch, cw = crop.shape
    found = [(t, l) for t in range(labels.shape[0] - ch + 1) for l in range(labels.shape[1] - cw + 1)
             if np.array_equal(labels[t:t + ch, l:l + cw], crop)]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("palette_png", [False, True])
def test_the_loader_reads_voc_files_filters_small_images_and_crops_pairs_alike(tmp_path, palette_png):
    _, truth = write_tiny_voc(tmp_path, palette_png)
    data = load_dataset(VOCData(dir=str(tmp_path), crop=(16, 24), batch_size=2), seed=3)
    assert data.x_train.shape == (2, 16, 24, 3) and data.x_train.dtype == np.float32
    assert data.y_train["mask"].shape == (2, 16, 24) and data.y_train["mask"].dtype == np.int32
    assert data.x_val.shape == (1, 16, 24, 3) and data.num_classes == 21 and data.label_names == VOC_CLASSES
    assert data.meta["left_out_smaller_than_crop"] == {"train": 1, "val": 0}
    for x, mask, name in ((data.x_train[0], data.y_train["mask"][0], "a"), (data.x_train[1], data.y_train["mask"][1], "b"),
                          (data.x_val[0], data.y_val["mask"][0], "v")):
        photo, labels = truth[name]
        top, left = window_of(labels, mask)
        np.testing.assert_allclose(x, photo[top:top + 16, left:left + 24] / 255.0, atol=1e-6)  # the same window
    again = load_dataset(VOCData(dir=str(tmp_path), crop=(16, 24), batch_size=2), seed=3)
    np.testing.assert_array_equal(again.y_train["mask"], data.y_train["mask"])  # the seed fixes the windows


def test_the_d2l_archive_is_extracted_once_into_the_cache(tmp_path):
    write_tiny_voc(tmp_path / "src")
    archive_dir = tmp_path / "data"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "VOCtrainval_11-May-2012.tar", "w") as tar:
        tar.add(tmp_path / "src" / "VOCdevkit", arcname="VOCdevkit")
    data = load_dataset(VOCData(dir=str(archive_dir), crop=(16, 24), batch_size=2), seed=0)
    assert data.num_train == 2 and "voc2012" in data.meta["dir"]


def test_missing_voc_says_what_to_download_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("DLRUN_DATA_DIR", raising=False)
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(VOCData(dir=str(tmp_path)), seed=0)
    message = str(err.value)
    assert "VOCtrainval_11-May-2012.tar" in message and "4e443f8a2eca6b1dac8a6c57641b67dd40621a49" in message
    assert str(tmp_path) in message and "VOCdevkit/VOC2012" in message


def test_the_generated_set_is_written_in_vocs_layout_once_and_its_labels_match_its_pixels(tmp_path):
    g = GeneratedVOC(num_train=12, num_val=4, num_classes=5, min_size=(30, 40), max_size=(36, 48), seed=2)
    voc = write_generated_voc(g, tmp_path)
    assert len((voc / "ImageSets/Segmentation/train.txt").read_text().split()) == 12
    assert len(list((voc / "JPEGImages").glob("*.jpg"))) == 16
    stamp = (voc / "ImageSets/Segmentation/train.txt").stat().st_mtime_ns
    assert write_generated_voc(g, tmp_path) == voc  # reused, not written again
    assert (voc / "ImageSets/Segmentation/train.txt").stat().st_mtime_ns == stamp
    images, labels, small = read_split(voc, "train", (30, 40), np.random.default_rng(0), VOC_COLORMAP[:5])
    assert small == 0 and set(np.unique(labels)) <= set(range(5)) and len(set(np.unique(labels)) - {0}) >= 2
    for c in set(np.unique(labels)) - {0}:  # a class's pixels show its colour (within the jitter and JPEG's error)
        inside = labels == c
        interior = inside & np.roll(inside, 1, 1) & np.roll(inside, -1, 1) & np.roll(inside, 1, 2) & np.roll(inside, -1, 2)
        mean = images[interior].mean(0) * 255
        assert np.abs(mean - np.asarray(CLASS_COLOURS[c - 1])).max() < 35, (c, mean)
    other = write_generated_voc(g.model_copy(update={"seed": 3}), tmp_path)
    assert other != voc  # another draw, another directory


def test_a_crop_larger_than_the_generated_images_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"base: {CONFIGS / 'fcn_cpu.yaml'}\ndata: {{crop: [96, 96]}}\n")
    with pytest.raises(ConfigError, match="crop"):
        load_config(path)
