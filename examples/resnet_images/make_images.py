"""Write images/<class>/<n>.png: sklearn's bundled digits at 32x32 (or `size`) in colour (each class its own
tint, random brightness and shifts), generated offline. Swap in your own folder of images: one subfolder per class."""

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main(out: Path = Path(__file__).parent / "images", copies: int = 2, size: int = 32) -> None:
    d, rng = load_digits(), np.random.default_rng(0)
    tints = rng.uniform(0.3, 1.0, size=(10, 3))
    inner = size * 3 // 4
    n = 0
    for _ in range(copies):
        for img, y in zip(d.images, d.target, strict=True):
            g = np.asarray(Image.fromarray((img * 16).astype(np.uint8)).resize((inner, inner)), dtype=np.float32)
            canvas = np.zeros((size, size), np.float32)
            dy, dx = rng.integers(0, size - inner + 1, size=2)
            canvas[dy:dy + inner, dx:dx + inner] = g * rng.uniform(0.6, 1.0)
            rgb = (canvas[..., None] * tints[y] + rng.normal(0, 8, (size, size, 3))).clip(0, 255).astype(np.uint8)
            (out / f"c{y}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(out / f"c{y}" / f"{n}.png")
            n += 1
    print(f"wrote {n} images to {out}")


if __name__ == "__main__":
    main(copies=int(sys.argv[1]) if len(sys.argv) > 1 else 2)
