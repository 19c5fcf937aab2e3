"""CT volumes at scale: discovery of a DICOM tree, decoding series to HU, windowing to uint8 RGB.

    .venv/bin/python benchmarks/bench_ct_volumes.py [--series 100] [--slices 300] [--size 64] [--root DIR]
    .venv/bin/python benchmarks/bench_ct_volumes.py --smoke    # 4 series x 5 slices at 32 px

A synthetic tree of ``--series`` x ``--slices`` uncompressed 12-bit slices is written once (into
``--root`` when given, reused there by later runs; else a temporary folder). Its slices carry the
headers and pixels of ``write_synthetic_set`` with new UIDs and positions per series. The tree nests
so that one folder holds each of the ``--points`` series counts.

- discovery: ``discover(folder)`` per point, each in a fresh process so that its memory figures start
  clean: wall time and files/s against plain ``pydicom.dcmread(stop_before_pixels=True)`` of the same
  files (reference), the tracemalloc peak, what the Discovery keeps per file, and the ru_maxrss rise.
- decoding: ``Series.volume()`` of ``--decode-series`` series in slices/s against
  ``pydicom.dcmread(path).pixel_array`` x slope + intercept in the same order (reference).
- images: ``volumes.slice_images`` (window to uint8, bilinear antialiased resize to ``--image-size``)
  against numpy windowing + a Pillow bilinear resize per channel (reference).
- cache: the factory's decoding step for the same series, in slices/s: without the slice cache (in
  memory), cold (decode + window + resize + write each entry, into an empty temporary cache folder),
  warm (entries checked and read back, every item touched through SliceDataset), and one epoch over
  the open memory maps; against plain pydicom decoding (reference); and the cache's bytes per slice.
The files sit in the OS page cache (just written or read), so "cold" means no ctframe cache, not a
cold disk, and "warm" reads cache entries from memory too. Timed sections report the fastest of
``--repeats``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LAYOUT = "bench_ct_volumes.json"
NESTED = "nested"


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":")[1].split()}
    chosen = sorted(f for f in flags if f == "avx2" or f.startswith(("avx512", "amx")))
    return " ".join(chosen) or "none of avx2/avx512/amx"


def _folders(tree: Path, points: list[int]) -> dict[int, Path]:
    """The folder holding exactly ``point`` series, per point: the smallest point is innermost."""
    return {point: tree.joinpath(*[NESTED] * (len(points) - 1 - i)) for i, point in enumerate(points)}


def _templates(slices: int, size: int) -> list[list]:
    """Two series (normal, nodule) of write_synthetic_set, as datasets in InstanceNumber order."""
    import pydicom
    from ctframe_ct_volumes.synthetic import write_synthetic_set

    with tempfile.TemporaryDirectory(prefix="ctframe-bench-ct-template-") as scratch:
        made = write_synthetic_set(Path(scratch) / "set", patients=2, slices=slices, size=(size, size))
        cases = sorted(p for p in made.root.iterdir() if p.is_dir())
        read = [[pydicom.dcmread(path) for path in case.glob("*.dcm")] for case in cases]
    return [sorted(series, key=lambda ds: int(ds.InstanceNumber)) for series in read]


def _write_tree(tree: Path, args: argparse.Namespace) -> int:
    """Write the series under ``tree`` reusing one dataset (new ids, positions and pixels per file)."""
    from pydicom.uid import generate_uid

    templates = _templates(args.slices, args.size)
    ds = copy.deepcopy(templates[0][0])  # the templates stay untouched
    folders = _folders(tree, args.points)
    rng = np.random.default_rng(0)
    written = 0
    for index in range(args.series):
        folder = folders[min(p for p in args.points if p > index)] / f"case{index:04d}"
        folder.mkdir(parents=True)
        ds.PatientID, ds.PatientName = f"BENCH{index:05d}", f"Bench^Patient{index:05d}"
        ids = [generate_uid(entropy_srcs=["bench", str(index), k]) for k in ("study", "series", "frame")]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = ids
        names = rng.permutation(args.slices)  # file names never follow the slice order
        for k, source in enumerate(templates[index % 2]):
            uid = generate_uid(entropy_srcs=[ids[1], str(k)])
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.InstanceNumber, ds.SliceLocation = source.InstanceNumber, source.SliceLocation
            ds.ImagePositionPatient, ds.PixelData = source.ImagePositionPatient, source.PixelData
            ds.save_as(folder / f"IM{names[k] + 1:05d}.dcm", enforce_file_format=True)
            written += 1
    return written


def _prepare(args: argparse.Namespace, scratch: str) -> Path:
    """The tree's root folder: reused when ``--root`` holds one of the same layout, else written."""
    root = Path(args.root) if args.root else Path(scratch)
    layout = {"series": args.series, "slices": args.slices, "size": args.size, "points": args.points}
    marker = root / LAYOUT
    if marker.is_file() and json.loads(marker.read_text()) == layout:
        print(f"tree reused from {root} ({args.series * args.slices} files, written by an earlier run)")
        return root / "tree"
    if root.exists() and any(root.iterdir()):
        sys.exit(f"error: {root} is neither empty nor a tree of this layout ({layout}); give another --root")
    started = time.perf_counter()
    written = _write_tree(root / "tree", args)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in (root / "tree").rglob("*.dcm"))
    marker.write_text(json.dumps(layout))
    print(
        f"tree written: {written} files, {size / 2**20:.0f} MiB in {seconds:.1f} s "
        f"({written / seconds:.0f} files/s; pydicom save_as, one dataset reused)"
    )
    return root / "tree"


def _child(folder: Path, repeats: int) -> None:
    """In a fresh process: time discover against header-only pydicom reads, then trace its memory."""
    import tracemalloc

    import pydicom
    from ctframe_ct_volumes.discover import discover

    discover_s, reference_s, base_kb, rss_kb = [], [], 0, 0
    for _ in range(repeats):  # the reference first: it warms pydicom up and keeps nothing
        started = time.perf_counter()
        files = 0
        for place, _, names in os.walk(folder):
            for name in names:
                pydicom.dcmread(os.path.join(place, name), stop_before_pixels=True)
                files += 1
        reference_s.append(time.perf_counter() - started)
        base_kb = base_kb or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        found = discover(folder)
        discover_s.append(time.perf_counter() - started)
        rss_kb = rss_kb or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the first run's peak
        series = len(found.series)
        del found
    tracemalloc.start()
    found = discover(folder)
    gc.collect()  # pydicom's leftovers would otherwise count as kept
    kept, peak = tracemalloc.get_traced_memory()  # ``found`` is alive: ``kept`` is what it holds
    tracemalloc.stop()
    del found
    figures = {"files": files, "series": series, "discover_s": min(discover_s)}
    figures |= {"reference_s": min(reference_s), "rss_rise_kb": rss_kb - base_kb, "peak": peak, "kept": kept}
    print(json.dumps(figures))


def _discovery(folders: dict[int, Path], repeats: int) -> None:
    print("\ndiscovery: discover(folder) against pydicom.dcmread(stop_before_pixels) of the same files;")
    print("one fresh process per row; memory from tracemalloc (Python heap) and ru_maxrss (whole process:")
    print("its rise over the reference's mark; discover reuses what that freed, so small trees show 0)")
    print(
        f"{'series':>6} {'files':>7} {'discover s':>10} {'files/s':>8} {'ref files/s':>11} {'ratio':>6} "
        f"{'peak MiB':>9} {'kept B/file':>11} {'RSS rise MiB':>12}"
    )
    rows = []
    for point, folder in sorted(folders.items()):
        command = [sys.executable, __file__, "--child", str(folder), "--repeats", str(repeats)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"error: the discovery process for {point} series failed:\n{done.stderr[-2000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        rate, ref = row["files"] / row["discover_s"], row["files"] / row["reference_s"]
        print(
            f"{row['series']:>6} {row['files']:>7} {row['discover_s']:>10.2f} {rate:>8.0f} {ref:>11.0f} "
            f"{rate / ref:>6.2f} {row['peak'] / 2**20:>9.1f} {row['kept'] / row['files']:>11.0f} "
            f"{row['rss_rise_kb'] / 1024:>12.1f}"
        )
    first, last = rows[0], rows[-1]
    if last["files"] > first["files"]:
        slope = (last["peak"] - first["peak"]) / (last["files"] - first["files"])
        verdict = "grows with the number of series" if slope > 100 else "is about independent of the series"
        print(f"peak memory {verdict}: {slope:.0f} B per extra file (one SliceHeader kept per file)")


def _best(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def _reference_volume(paths: list[Path]) -> np.ndarray:
    import pydicom

    planes = []
    for path in paths:
        ds = pydicom.dcmread(path)
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        planes.append(ds.pixel_array.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    return np.stack(planes)


def _pillow_images(hu: np.ndarray, windows: list, size: int) -> np.ndarray:
    """The reference: numpy windowing to uint8 and a Pillow bilinear resize, per slice and channel."""
    from ctframe_ct_volumes.windows import get_window
    from PIL import Image

    out = np.empty((len(hu), len(windows), size, size), np.uint8)
    for c, spec in enumerate(windows):
        w = get_window(spec)
        scaled = np.rint(np.clip((hu - np.float32(w.low)) / np.float32(w.width) * 255, 0, 255))
        scaled = scaled.astype(np.uint8)
        for s, plane in enumerate(scaled):
            out[s, c] = np.asarray(Image.fromarray(plane).resize((size, size), Image.Resampling.BILINEAR))
    return out


def _decoding(folders: dict[int, Path], args: argparse.Namespace) -> None:
    from ctframe_ct_volumes.discover import discover
    from ctframe_ct_volumes.volumes import slice_images

    # the smallest folder that holds enough series, so that the whole tree is not read again
    folder = folders[min((p for p in folders if p >= args.decode_series), default=max(folders))]
    chosen = discover(folder).series[: args.decode_series]
    slices = sum(series.slice_count for series in chosen)
    paths = [[header.path for header in series.slices] for series in chosen]
    rows = []
    ref = _best(args.repeats, lambda: [_reference_volume(p) for p in paths])
    ours = _best(args.repeats, lambda: [series.volume() for series in chosen])
    rows += [("pydicom pixel_array * slope + intercept (ref)", ref, ref), ("Series.volume()", ours, ref)]
    volumes = [series.volume() for series in chosen]
    slice_images(volumes[0][:1], ["lung"], "all", 1, args.image_size)  # torch's first call sets up kernels
    for label, windows in (
        ("1 window (lung)", ["lung"]),
        ("3 windows (lung, mediastinum, bone)", ["lung", "mediastinum", "bone"]),
    ):
        ref = _best(args.repeats, lambda w=windows: [_pillow_images(v, w, args.image_size) for v in volumes])
        ours = _best(
            args.repeats, lambda w=windows: [slice_images(v, w, "all", 1, args.image_size) for v in volumes]
        )
        rows += [(f"numpy + Pillow, {label} (ref)", ref, ref), (f"slice_images, {label}", ours, ref)]
    print(
        f"\ndecoding {len(chosen)} series, {slices} slices of {args.size} px; "
        f"images: uint8 RGB at {args.image_size} px"
    )
    print(f"{'path':<58} {'slices/s':>9} {'ratio':>6}")
    for label, seconds, reference in rows:
        print(f"{label:<58} {slices / seconds:>9.0f} {reference / seconds:>6.2f}")


def _cache(folders: dict[int, Path], args: argparse.Namespace) -> None:
    from ctframe_ct_volumes.dataset import SliceDataset
    from ctframe_ct_volumes.discover import discover
    from ctframe_ct_volumes.factory import _decode
    from ctframe_ct_volumes.options import CtVolumesOptions
    from ctframe_ct_volumes.pseudonym import Pseudonymizer
    from ctframe_ct_volumes.volumes import volumes_of

    from ctframe import BuildContext

    folder = folders[min((p for p in folders if p >= args.decode_series), default=max(folders))]
    found = discover(folder)
    found = dataclasses.replace(found, series=found.series[: args.decode_series])
    volumes = volumes_of(found, Pseudonymizer(b"bench" * 8))
    slices = sum(series.slice_count for series in found.series)
    logger = logging.getLogger("bench-ct-volumes-cache")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    context = BuildContext(seed=0, device="cpu", recipe_dir=folder, logger=logger)
    with tempfile.TemporaryDirectory(prefix="ctframe-bench-ct-cache-") as scratch:
        values = {"root": folder, "classes": ["a", "b"], "positive_class": "a", "image_size": args.image_size}
        cached = CtVolumesOptions.model_validate(
            values | {"cache_dir": scratch}, context={"base_dir": folder}
        )
        in_memory = CtVolumesOptions.model_validate(values | {"cache": False}, context={"base_dir": folder})

        def cold() -> None:
            shutil.rmtree(scratch)
            os.mkdir(scratch)
            _decode(cached, volumes, context)

        def touch(dataset: SliceDataset) -> None:
            for index in range(len(dataset)):
                dataset[index]

        def warm() -> SliceDataset:
            decoded = _decode(cached, volumes, context)
            entries = [
                (series, k) for series, (indices, _) in enumerate(decoded) for k in range(len(indices))
            ]
            blank = [0] * len(entries)
            dataset = SliceDataset([images for _, images in decoded], entries, blank, [""] * len(entries))
            touch(dataset)
            return dataset

        paths = [[header.path for header in series.slices] for series in found.series]
        ref = _best(args.repeats, lambda: [_reference_volume(p) for p in paths])
        plain = _best(args.repeats, lambda: _decode(in_memory, volumes, context))
        rows = [("pydicom pixel_array * slope + intercept (ref)", ref)]
        rows.append(("build, cache = false (decode + window + resize)", plain))
        rows.append(("cold build (decode + window + resize + write entry)", _best(args.repeats, cold)))
        rows.append(("warm build (entries read back, every item touched)", _best(args.repeats, warm)))
        dataset = warm()
        epoch = _best(args.repeats, lambda: touch(dataset))
        rows.append(("epoch: every item from the open memory maps", epoch))
        stored = sum(path.stat().st_size for path in Path(scratch).iterdir())
    print(
        f"\ncache: {len(volumes)} series, {slices} slices of {args.size} px to uint8 RGB at "
        f"{args.image_size} px, 1 window (lung)"
    )
    print(f"{'path':<58} {'slices/s':>9} {'ratio':>6}")
    for label, seconds in rows:
        print(f"{label:<58} {slices / seconds:>9.0f} {ref / seconds:>6.2f}")
    pixels = 3 * args.image_size**2
    print(
        f"cache bytes per slice: {stored / slices:.0f} ({pixels} of pixels, the rest npy headers and indices)"
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--slices", type=int, default=300, help="slices per series")
    parser.add_argument("--size", type=int, default=64, help="side of the stored slices in pixels")
    parser.add_argument("--points", default="", help="series counts per discovery row (default N/4,N/2,N)")
    parser.add_argument("--decode-series", type=int, default=4, help="series decoded in the decoding table")
    parser.add_argument("--image-size", type=int, default=224, help="side of the RGB images")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--root", help="folder for the tree, kept and reused (default: a temporary one)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one discovery row, in a fresh process
    args = parser.parse_args()
    if args.smoke:
        args.series, args.slices, args.size, args.image_size, args.repeats = 4, 5, 32, 48, 1
        args.decode_series = 2
    given = [int(p) for p in args.points.split(",") if p.strip()]
    points = given or [args.series // 4, args.series // 2, args.series]
    args.points = sorted({p for p in points if 0 < p <= args.series} | {args.series})
    if args.series < 1 or args.slices < 2 or args.size < 8:
        parser.error("give at least 1 series, 2 slices and 8 px")
    return args


def main() -> None:
    args = _arguments()
    if args.child:
        _child(Path(args.child), args.repeats)
        return
    import torch

    print(
        f"CT volumes: {args.series} series x {args.slices} slices of {args.size} x {args.size} px, "
        f"uncompressed 12-bit; best of {args.repeats}; {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads; CPU flags: {_cpu_flags()}"
    )
    with tempfile.TemporaryDirectory(prefix="ctframe-bench-ct-") as scratch:
        tree = _prepare(args, scratch)
        folders = _folders(tree, args.points)
        _discovery(folders, args.repeats)
        _decoding(folders, args)
        _cache(folders, args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
