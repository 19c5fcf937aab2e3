"""Demo data: deterministic, idempotent, completes an interrupted run, refuses foreign folders."""

from __future__ import annotations

import numpy as np
import pytest
from ctframe_folder_split.demo import MARKER, check_demo_version, generate_demo_data
from PIL import Image

from ctframe import DataError


def pixels(root):
    return {p.relative_to(root).as_posix(): np.asarray(Image.open(p)) for p in sorted(root.rglob("*.png"))}


def test_deterministic_and_idempotent(tmp_path):
    first = generate_demo_data(tmp_path / "a", per_class=8, size=32)
    second = generate_demo_data(tmp_path / "b", per_class=8, size=32)
    a, b = pixels(first), pixels(second)
    assert len(a) == 16 and a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert all(image.shape == (32, 32) and image.dtype == np.uint8 for image in a.values())
    covid = np.mean([a[k].std() for k in a if k.startswith("COVID/")])
    assert covid > 10  # real structure, not blank images
    stamp = (first / "COVID" / "Covid (1).png").stat().st_mtime_ns
    generate_demo_data(first, per_class=8, size=32)
    assert (first / "COVID" / "Covid (1).png").stat().st_mtime_ns == stamp
    different = generate_demo_data(tmp_path / "c", per_class=8, size=32, seed=1)
    assert any(not np.array_equal(a[k], pixels(different)[k]) for k in a)


def test_interrupted_generation_is_completed(tmp_path):
    root = generate_demo_data(tmp_path / "demo", per_class=6, size=24)
    reference = pixels(root)
    (root / MARKER).unlink()
    (root / "non-COVID" / "Non-Covid (6).png").unlink()
    generate_demo_data(root, per_class=6, size=24)
    again = pixels(root)
    assert again.keys() == reference.keys() and all(np.array_equal(again[k], reference[k]) for k in again)


def test_refuses_other_settings_and_foreign_files(tmp_path):
    root = generate_demo_data(tmp_path / "demo", per_class=4, size=24)
    with pytest.raises(DataError, match="other settings"):
        generate_demo_data(root, per_class=5, size=24)
    (tmp_path / "mine" / "COVID").mkdir(parents=True)
    (tmp_path / "mine" / "COVID" / "scan.png").write_bytes(b"x")
    with pytest.raises(DataError, match="not demo data"):
        generate_demo_data(tmp_path / "mine", per_class=4, size=24)


def test_demo_data_of_an_older_generator_is_refused(tmp_path):
    root = generate_demo_data(tmp_path / "demo", per_class=4, size=24)
    check_demo_version(root)  # current: accepted
    (root / MARKER).write_text('{"version": 1, "per_class": 4, "size": 24, "seed": 0}\n')
    with pytest.raises(DataError, match="older generator"):
        check_demo_version(root)
