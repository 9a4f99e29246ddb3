"""The banana detection set (D2L 13.6): the real format's loader on files written here, the
generated set (deterministic, boxes that enclose the pasted banana), and boxes moving with their
images through the input pipeline."""

import zipfile

import jax
import numpy as np
import pytest
from PIL import Image

from dlrun.core.config.augment import AugmentConfig
from dlrun.core.config.detection import BananasData
from dlrun.core.data.bananas import backgrounds, generated_example, read_split, write_generated_bananas
from dlrun.core.data.detection import bananas
from dlrun.core.data.pipeline import build_pipeline
from dlrun.core.errors import DataError, DataNotFoundError

# (file, corners in pixels) of a tiny set in the real format, images 64 wide and 32 high
ROWS = {"bananas_train": [("0.png", (4, 2, 20, 30)), ("1.png", (10, 8, 64, 16))], "bananas_val": [("0.png", (0, 0, 32, 32))]}


def write_real_format(root, damaged=None):
    """banana-detection/ in d2l's layout, each image a constant colour (its index / 10)."""
    for split, rows in ROWS.items():
        (root / split / "images").mkdir(parents=True)
        lines = ["img_name,label,xmin,ymin,xmax,ymax"]
        for i, (name, box) in enumerate(rows):
            Image.new("RGB", (64, 32), (25 * i, 0, 0)).save(root / split / "images" / name)
            lines.append(f"{name},0,{','.join(map(str, box))}")
        if damaged:
            (root / split / "images" / damaged).write_bytes(b"not a png")
            lines.append(f"{damaged},0,1,1,2,2")
        (root / split / "label.csv").write_text("\n".join(lines) + "\n")
    return root


def expected_boxes(split):
    return np.array([[[b[0] / 64, b[1] / 32, b[2] / 64, b[3] / 32]] for _, b in ROWS[split]], np.float32)


def test_the_real_format_is_read_into_fractions_of_each_image(tmp_path):
    write_real_format(tmp_path / "banana-detection", damaged="2.png")
    data = bananas(BananasData(source="real", size=16, dir=str(tmp_path)), seed=0)
    assert data.x_train.shape == (2, 16, 16, 3) and data.x_val.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(data.y_train["boxes"], expected_boxes("bananas_train"))
    np.testing.assert_allclose(data.y_val["boxes"], expected_boxes("bananas_val"))
    assert data.y_train["classes"].tolist() == [[0], [0]] and data.num_classes == 1
    np.testing.assert_allclose(data.x_train[1, ..., 0], 25 / 255, atol=1e-6)  # pixels scaled to [0, 1]
    assert len(data.meta["bad_files"]) == 2 and all("2.png" in b for b in data.meta["bad_files"])  # named, left out


def test_the_zip_is_unpacked_beside_itself_once(tmp_path):
    src = write_real_format(tmp_path / "src" / "banana-detection")
    store = tmp_path / "store"
    store.mkdir()
    with zipfile.ZipFile(store / "banana-detection.zip", "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src.parent))
    data = bananas(BananasData(source="real", size=8, dir=str(store)), seed=0)
    assert (store / "banana-detection" / "bananas_val" / "label.csv").is_file()
    np.testing.assert_allclose(data.y_train["boxes"], expected_boxes("bananas_train"))
    assert not [p for p in store.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_missing_data_says_where_to_put_the_zip(tmp_path):
    with pytest.raises(DataNotFoundError, match="banana-detection.zip.*5de26c8fce5ccdea9f91267273464dc968d20d72"):
        bananas(BananasData(source="real", dir=str(tmp_path)), seed=0)


def test_a_bad_label_file_is_named(tmp_path):
    root = write_real_format(tmp_path / "banana-detection")
    (root / "bananas_train" / "label.csv").write_text("name,x\n0.png,1\n")
    with pytest.raises(DataError, match=r"bananas_train/label.csv: the first line must be img_name,label"):
        read_split(root / "bananas_train", 8)
    (root / "bananas_train" / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,a,1,2,3\n")
    with pytest.raises(DataError, match="line 2: label and corners must be numbers"):
        read_split(root / "bananas_train", 8)


def test_generated_examples_are_deterministic_and_boxed_tightly():
    scenes = backgrounds()
    first = [generated_example(np.random.default_rng(7), scenes) for _ in range(2)]
    assert np.array_equal(first[0][0], first[1][0]) and first[0][2] == first[1][2]
    rng = np.random.default_rng(3)
    for _ in range(12):
        image, alpha, (x1, y1, x2, y2) = generated_example(rng, scenes)
        assert image.shape == (256, 256, 3) and alpha.shape == (256, 256) and alpha.any()
        ys, xs = np.nonzero(alpha)
        assert xs.min() == x1 and xs.max() == x2 - 1 and ys.min() == y1 and ys.max() == y2 - 1  # encloses, tightly
        # the banana's pixels are what was pasted: yellow-ish where it is opaque, not the background
        assert image[alpha][:, 0].mean() > image[alpha][:, 2].mean()


def test_the_generated_set_is_written_once_in_the_real_format(tmp_path):
    root = write_generated_bananas(tmp_path / "gen", 3, 2, seed=5)
    labels = (root / "bananas_train" / "label.csv").read_text()
    assert labels.splitlines()[0] == "img_name,label,xmin,ymin,xmax,ymax" and len(labels.splitlines()) == 4
    again = write_generated_bananas(tmp_path / "gen2", 3, 2, seed=5)
    assert (again / "bananas_train" / "label.csv").read_text() == labels
    assert np.array_equal(np.asarray(Image.open(root / "bananas_val/images/1.png")),
                          np.asarray(Image.open(again / "bananas_val/images/1.png")))
    mtime = (root / "bananas_train" / "label.csv").stat().st_mtime_ns
    write_generated_bananas(root, 3, 2, seed=5)  # found: not written again
    assert (root / "bananas_train" / "label.csv").stat().st_mtime_ns == mtime
    split = read_split(root / "bananas_train", 256)
    rng, scenes = np.random.default_rng(5), backgrounds()
    for i in range(3):
        _, _, box = generated_example(rng, scenes)
        np.testing.assert_allclose(split.boxes[i, 0], np.array(box) / 256)


def test_boxes_flip_with_their_images_through_the_pipeline():
    rng, scenes = np.random.default_rng(0), backgrounds()
    examples = [generated_example(rng, scenes) for _ in range(8)]
    x = np.stack([e[0] for e in examples]).astype(np.float32) / 255
    alpha = np.stack([e[1] for e in examples]).astype(np.int32)
    boxes = np.array([[np.array(e[2]) / 256] for e in examples], np.float32)
    cfg = BananasData(source="generated", size=256, augment=AugmentConfig(flip=True))
    pipeline = build_pipeline(cfg, x.shape[1:])
    images, moved = pipeline.apply_pair(x, {"boxes": boxes, "mask": alpha, "classes": np.zeros((8, 1), np.int32)},
                                        jax.random.PRNGKey(1), True)
    images, moved = np.asarray(images), jax.tree_util.tree_map(np.asarray, moved)
    flipped = [np.array_equal(images[i], x[i, :, ::-1]) for i in range(8)]
    assert any(flipped) and not all(flipped)
    for i in range(8):
        assert flipped[i] or np.array_equal(images[i], x[i])
        ys, xs = np.nonzero(moved["mask"][i])  # where the banana is now, mirrored with the image
        want = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / 256
        np.testing.assert_allclose(moved["boxes"][i, 0], want, atol=1e-6)
