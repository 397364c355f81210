"""Build the bundled demo sample ``skhyper/data/horses`` from the Weizmann horse set.

Selection rule (so that the sample's own train/test agree with the project's standard split):
stems sorted by name, ``perm = np.random.default_rng(0).permutation(n)``; the first 16 stems of
``perm[:200]`` are the sample's train part and the first 8 stems of ``perm[200:]`` its test part.
Each image is downscaled so its longer side is at most 160 px (aspect kept; image with LANCZOS,
saved as JPEG quality 92; mask with NEAREST, re-thresholded to {0, 255}, saved as 8-bit PNG).

Usage::

    python benchmarks/make_demo_sample.py [--source ../shared/data/weizmann_horse] [--dest ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "weizmann_horse"
DEFAULT_DEST = REPO / "skhyper" / "data" / "horses"
N_TRAIN_FULL = 200  # the project's standard split of the 328-image set
N_TRAIN, N_TEST = 16, 8
MAX_SIDE = 160


def select_stems(stems: list[str]) -> tuple[list[str], list[str]]:
    """Return the (train, test) stems of the sample, in permutation order."""
    stems = sorted(stems)
    perm = np.random.default_rng(0).permutation(len(stems))
    train = [stems[i] for i in perm[:N_TRAIN_FULL][:N_TRAIN]]
    test = [stems[i] for i in perm[N_TRAIN_FULL:][:N_TEST]]
    return train, test


def _target_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def convert(source: Path, dest: Path, stem: str, max_side: int = MAX_SIDE) -> None:
    """Downscale one image/mask pair from ``source`` and write it under ``dest``."""
    image = Image.open(source / "images" / f"{stem}.jpg").convert("RGB")
    mask = Image.open(source / "masks" / f"{stem}.png").convert("L")
    if image.size != mask.size:
        raise ValueError(f"{stem}: image size {image.size} != mask size {mask.size}")
    size = _target_size(image.size, max_side)
    image = image.resize(size, Image.Resampling.LANCZOS)
    mask = mask.resize(size, Image.Resampling.NEAREST)
    mask_arr = np.where(np.asarray(mask) > 127, 255, 0).astype(np.uint8)
    image.save(dest / "images" / f"{stem}.jpg", quality=92)
    Image.fromarray(mask_arr, mode="L").save(dest / "masks" / f"{stem}.png", optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="folder with images/horseNNN.jpg and masks/horseNNN.png")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help="output folder (images/, masks/, split.txt are written there)")
    args = parser.parse_args(argv)

    stems = [p.stem for p in (args.source / "images").glob("*.jpg")]
    if len(stems) != 328:
        raise SystemExit(f"expected 328 images under {args.source / 'images'}, found {len(stems)}")
    train, test = select_stems(stems)

    for sub in ("images", "masks"):
        (args.dest / sub).mkdir(parents=True, exist_ok=True)
        for old in (args.dest / sub).iterdir():  # keep the folder exactly the sample
            if old.is_file():
                old.unlink()
    for stem in train + test:
        convert(args.source, args.dest, stem)
    lines = [f"{s} train" for s in train] + [f"{s} test" for s in test]
    (args.dest / "split.txt").write_text("\n".join(lines) + "\n")

    total = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file())
    print(f"wrote {len(train)} train + {len(test)} test pairs to {args.dest}, "
          f"{total / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
