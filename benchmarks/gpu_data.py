"""Generated stand-ins for the data sets the GPU check's configs read, so that it never needs a
download: Fashion-MNIST's four IDX files, a folder of small RGB images (for configs/dcgan.yaml's
Pokemon sprites) and a file of English-French pairs (for configs/transformer.yaml). Each is
learnable, so that a falling loss means the network trains: an image's class is a bright band at
a row that depends on it, a sprite is a coloured square on noise, a French sentence is its English
one word for word. The recommender configs' `_lowrank` and `_generated` twins make their own data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EN = ("i", "you", "we", "they", "see", "like", "have", "want", "the", "a", "red", "big", "cat", "dog", "house",
      "car", "tree", "book", "now", "here")
FR = ("je", "tu", "nous", "ils", "vois", "aime", "ai", "veux", "le", "un", "rouge", "grand", "chat", "chien", "maison",
      "voiture", "arbre", "livre", "maintenant", "ici")


def generate(directory: Path, smoke: bool) -> dict[str, Path]:
    """Every stand-in under `directory`, by the name gpu_check.py's overrides give it; at the
    configs' sizes (8,192 training images: 32 batches of 256; 512 sprites of 64x64), or tiny."""
    n_train, n_val, sprites, side = (128, 32, 64, 16) if smoke else (8192, 512, 512, 64)
    return {"fashion_mnist": fashion_mnist(directory / "fashion_mnist", n_train, n_val),
            "sprites": image_folder(directory / "sprites", sprites, side),
            "pairs": sentence_pairs(directory / "fra-eng" / "fra.txt", 1000)}


def fashion_mnist(directory: Path, n_train: int, n_val: int, seed: int = 0) -> Path:
    """Four IDX files shaped like Fashion-MNIST's (28x28 grey, 10 classes): class c lights up a
    4-pixel-high band at row 2 * c + 4, on top of noise (tests/conftest.py writes the same)."""
    from dlrun.core.data.idx import write_idx

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 80, (n, 28, 28)).astype(np.uint8)
        rows = 2 * labels[:, None] + 4 + np.arange(4)[None, :]  # (n, 4): each image's band
        images[np.arange(n)[:, None], rows, 4:24] = 220
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


def image_folder(directory: Path, n: int, size: int, seed: int = 0) -> Path:
    """`n` RGB PNG files of size x size: noise with a square of one of eight colours, a quarter
    of the side, somewhere on it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255],
                        [255, 128, 0], [255, 255, 255]], np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    side = max(2, size // 4)
    for i in range(n):
        image = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        r, c = rng.integers(0, size - side, 2)
        image[r : r + side, c : c + side] = colours[i % len(colours)]
        Image.fromarray(image).save(directory / f"sprite{i:05d}.png")
    return directory


def sentence_pairs(path: Path, n: int, seed: int = 0) -> Path:
    """`n` lines `english<TAB>french` as fra-eng/fra.txt holds them: 1 to 6 words of a
    20-word vocabulary, translated word for word, then a full stop."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        ids = rng.integers(0, len(EN), rng.integers(1, 7))
        lines.append(" ".join(EN[i] for i in ids) + " .\t" + " ".join(FR[i] for i in ids) + " .")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
