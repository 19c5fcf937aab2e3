"""Speed of the sequence-grouping and leakage-check building blocks.

Run: .venv/bin/python benchmarks/bench_similarity.py [--smoke]

Thumbnails: images/s of :func:`thumbnail` on generated RGB images at the sizes it sees (the full
release's originals are about 120-530 px a side; the dataset's cached images are 224 px), against a
reference in the same run: Pillow's own RGB -> "L" conversion and resize of the same images (the C path
without our float conversion and normalisation).

Nearest neighbours at the full release's scale (2,481 images, 1,024-d vectors, 30% test): the blocked
search at several batch sizes against one full similarity matrix and argmax (the reference), with the
block's memory. ``--smoke`` shrinks every size (8 images of 32 and 64 px, 200 vectors, one run each) to
check in seconds that the benchmark runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ctframe_folder_split.leakage import leakage_check, nearest_neighbours
from ctframe_folder_split.sequence import group_sequences, thumbnail
from PIL import Image


def best_time(repeats: int, function, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def pillow_reference(images: list[np.ndarray]) -> None:
    for image in images:
        small = Image.fromarray(image).convert("L").resize((32, 32), Image.Resampling.BOX)
        np.asarray(small, dtype=np.float32)


def ours(images: list[np.ndarray]) -> None:
    for image in images:
        thumbnail(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks that it runs")
    # repeats, thumbnail input sides, images per side, vectors, nearest-neighbour batch sizes
    repeats, sides, count, n, batches = 3, (224, 512), 100, 2481, (64, 256, 1024)
    if parser.parse_args().smoke:
        repeats, sides, count, n, batches = 1, (32, 64), 8, 200, (16, 64)
    rng = np.random.default_rng(0)
    print("thumbnail (32x32) images/s, best of", repeats)
    print(f"{'image side':>10s} {'thumbnail':>10s} {'pillow ref':>10s} {'ratio':>6s}")
    for side in sides:
        images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(count)]
        ours_s, ref_s = best_time(repeats, ours, images), best_time(repeats, pillow_reference, images)
        print(f"{side:>10d} {count / ours_s:>10.0f} {count / ref_s:>10.0f} {ref_s / ours_s:>6.2f}")

    dim = 32 * 32
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors -= vectors.mean(axis=1, keepdims=True)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    test, train = vectors[: n * 3 // 10], vectors[n * 3 // 10 :]

    def full_matrix() -> None:
        matrix = test @ train.T
        matrix.argmax(axis=1)

    reference = best_time(repeats, full_matrix)
    print(f"\nnearest neighbours, {len(test)} test x {len(train)} train x {dim}-d, best of {repeats}")
    print(f"{'method':>22s} {'seconds':>8s} {'block MiB':>9s} {'ratio':>6s}")
    full_mib = len(test) * len(train) * 4 / 2**20
    print(f"{'full matrix (ref)':>22s} {reference:>8.3f} {full_mib:>9.1f} {1.0:>6.2f}")
    for batch in batches:
        seconds = best_time(repeats, nearest_neighbours, test, train, batch)
        memory = min(batch, len(test)) * len(train) * 4 / 2**20
        print(f"{f'blocked, batch {batch}':>22s} {seconds:>8.3f} {memory:>9.1f} {reference / seconds:>6.2f}")

    ids = [str(k) for k in range(n)]
    check = best_time(repeats, leakage_check, test, train, ids[: len(test)], ids[len(test) :])
    names = [f"Covid ({k}).png" for k in range(n)]
    grouping = best_time(repeats, group_sequences, names, vectors)
    print(f"\nleakage_check (same sizes, no classes): {check:.3f} s")
    print(f"group_sequences on {n} files (vectors given): {grouping:.3f} s")


if __name__ == "__main__":
    main()
