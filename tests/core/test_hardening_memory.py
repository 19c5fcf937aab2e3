"""Memory bounded by design (issue 26, item 5).

The bootstrap hands out its resamples in blocks sized from the test set: the intervals must not depend
on the block size and the peak must not grow with the number of resamples. ``import-keras`` checks a
``.keras`` archive's declared sizes before inflating anything and never reads past them.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ctframe import Kind, MetricInput
from ctframe.evaluation import bootstrap
from ctframe.evaluation.scores import bootstrap_values, score
from ctframe.registry.plugins import PLUGINS_ENV, build_registry
from ctframe.registry.settings import EvaluationSettings
from tests.core.hostile_support import invoke, refused, tree

SAMPLES = 600
KERAS_PLUGINS = "folder_split,resnet_v2,dense_head,two_phase,classification_metrics"
RECIPE = """\
metrics = ["accuracy"]

[dataset]
component = "folder_split"
root = "demo"
classes = ["COVID", "non-COVID"]
positive_class = "non-COVID"

[backbone]
component = "resnet50v2"
weights = "none"

[head]
component = "dense"
units = 16

[trainer]
component = "two_phase"
"""


@pytest.fixture
def metrics(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "classification_metrics")
    registry = build_registry()
    chosen = []
    for name in registry.names(Kind.METRIC):
        component = registry.get(Kind.METRIC, name)
        chosen.append((name, component.factory(component.options(), None)))
    return chosen


def _inputs(seed: int = 0, samples: int = SAMPLES) -> tuple[MetricInput, np.ndarray]:
    """Three classes of unequal size, informative scores with ties, and groups of one to four samples."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=samples, p=[0.5, 0.3, 0.2])
    logits = rng.normal(size=(samples, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits.round(1))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    groups = np.array([f"p{i // 3 + (i % 7 == 0)}" for i in range(samples)])
    return MetricInput(labels, probabilities, ("a", "b", "c"), 1, None), groups


def _with_block(monkeypatch, block: int, samples: int = SAMPLES) -> None:
    monkeypatch.setattr(bootstrap, "BLOCK_BYTES", 8 * samples * block)
    assert bootstrap.block_resamples(samples) == min(block, bootstrap.CHUNK)


def _old_stream(labels: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The counts as drawn before blocks existed: chunks of 250, class after class, in one piece each."""
    rng, chunks = np.random.default_rng(seed), []
    for start in range(0, resamples, bootstrap.CHUNK):
        rows = min(bootstrap.CHUNK, resamples - start)
        counts = np.zeros(rows * len(labels), dtype=np.int64)
        offsets = (np.arange(rows) * len(labels))[:, None]
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            drawn = members[rng.integers(0, len(members), size=(rows, len(members)))]
            counts += np.bincount((drawn + offsets).ravel(), minlength=rows * len(labels))
        chunks.append(counts.reshape(rows, len(labels)))
    return np.concatenate(chunks).astype(np.float64)


# (kind, block): every interval equals the one drawn in whole chunks (block 250), to the last bit.
@pytest.mark.parametrize("block", [1, 7, 33])
@pytest.mark.parametrize("kind", ["stratified", "cluster"])
def test_intervals_do_not_depend_on_the_block_size(kind, block, metrics, monkeypatch):
    inputs, groups = _inputs()
    settings = EvaluationSettings(bootstrap=300)
    chosen = groups if kind == "cluster" else None
    _with_block(monkeypatch, bootstrap.CHUNK)
    whole = score("test", metrics, inputs, settings, 4, chosen)
    _with_block(monkeypatch, block)
    blocked = score("test", metrics, inputs, settings, 4, chosen)
    assert whole.resampled.keys() == blocked.resampled.keys() and "roc_auc_macro" in whole.resampled
    for name, values in whole.resampled.items():
        assert np.array_equal(values, blocked.resampled[name], equal_nan=True), name
    assert whole.estimates == blocked.estimates and whole.calibration == blocked.calibration


@pytest.mark.parametrize("block", [1, 7, None])
def test_resamples_are_the_ones_drawn_before_blocks_existed(block):
    inputs, _ = _inputs(1)
    drawn = np.concatenate(list(bootstrap.resample_weights(inputs.labels, 300, 9, block=block)))
    assert np.array_equal(drawn, _old_stream(inputs.labels, 300, 9))


def test_cluster_blocks_are_the_whole_chunk_cut_into_rows():
    inputs, groups = _inputs(2)
    whole = np.concatenate(list(bootstrap.group_resample_weights(inputs.labels, groups, 300, 5, block=250)))
    for block in (1, 7, 64):
        blocks = list(bootstrap.group_resample_weights(inputs.labels, groups, 300, 5, block=block))
        assert max(len(b) for b in blocks) == block and np.array_equal(np.concatenate(blocks), whole)


def _peak_bytes(metrics, inputs, groups, resamples: int) -> int:
    tracemalloc.start()
    try:
        bootstrap_values(metrics, inputs, EvaluationSettings(bootstrap=resamples), 0, groups)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["stratified", "cluster"])
def test_peak_memory_does_not_grow_with_the_resamples(kind, metrics, monkeypatch):
    samples = 8000  # enough that a block of weights outweighs the values kept per resample
    inputs, groups = _inputs(3, samples)
    _with_block(monkeypatch, 10, samples)  # 640 kB blocks: both counts below span many blocks
    chosen = groups if kind == "cluster" else None
    some = [(name, metric) for name, metric in metrics if name in ("accuracy", "roc_auc")]
    few, many = (_peak_bytes(some, inputs, chosen, count) for count in (100, 1000))
    assert many < 1.5 * few, (few, many)
    # Drawn in chunks of 250 as before, 1000 resamples took 16 MB weight blocks (and copies of them).
    assert many < 8 * samples * bootstrap.CHUNK / 2


def test_estimated_bootstrap_memory_is_bounded():
    rows = 3_500_000
    assert bootstrap.bootstrap_peak_bytes(rows, 0) == 0
    assert bootstrap.bootstrap_peak_bytes(rows, 100) == bootstrap.bootstrap_peak_bytes(rows, 10_000)
    assert bootstrap.bootstrap_peak_bytes(rows, 1000) <= bootstrap.PEAK_BLOCKS * bootstrap.BLOCK_BYTES


def test_metrics_states_its_memory_for_a_large_file(tmp_path, monkeypatch):
    from ctframe.commands import metrics as command

    monkeypatch.setenv(PLUGINS_ENV, "classification_metrics")
    monkeypatch.setattr(command, "LARGE_FILE_ROWS", 50)
    rng = np.random.default_rng(0)
    lines = ["true_class,p_a,p_b"] + [
        f"{'ab'[i % 2]},{p:.3f},{1 - p:.3f}" for i, p in enumerate(rng.random(60))
    ]
    (tmp_path / "predictions.csv").write_text("\n".join(lines) + "\n")
    stated = []
    for resamples in ("20", "200"):
        output = tmp_path / f"out{resamples}"
        code, _, err = invoke(["metrics", str(tmp_path / "predictions.csv"), "--positive", "a",
                               "--bootstrap", resamples, "-o", str(output)])  # fmt: skip
        info = [line for line in err.splitlines() if line.startswith("info: ")]
        assert code == 0 and len(info) == 1 and "60 rows, estimated peak memory" in info[0], err
        stated.append(info[0].split("GiB for the rows, ")[1])
    assert stated[0] == stated[1]  # the bootstrap's share does not grow with the resamples


# Hostile .keras archives ------------------------------------------------------------------------


def _patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite the uncompressed size the central directory declares for ``name``."""
    buffer = bytearray(data)
    start = 0
    while (start := buffer.find(b"PK\x01\x02", start)) >= 0:
        name_length = struct.unpack_from("<H", buffer, start + 28)[0]
        if buffer[start + 46 : start + 46 + name_length].decode() == name:
            struct.pack_into("<I", buffer, start + 24, size)
        start += 4
    return bytes(buffer)


def _archive(members: dict[str, bytes], declared: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    data = buffer.getvalue()
    for name, size in (declared or {}).items():
        data = _patch_declared_size(data, name, size)
    return data


ZEROS = bytes(64 * 2**20)
CONFIG = b'{"class_name": "Functional", "config": {"layers": []}}'
BOMBS = {
    # two members each declared just under 4 GiB: 8 GiB in all, refused before reading a byte
    "declared_huge": (
        _archive(
            {"config.json": CONFIG, "model.weights.h5": b"x" * 100, "assets/a": b"y" * 100},
            {"model.weights.h5": 0xFFFFFFF0, "assets/a": 0xFFFFFFF0},
        ),  # fmt: skip
        "8.00 GiB inflated",
    ),
    "ratio_huge": (_archive({"config.json": CONFIG, "model.weights.h5": ZEROS}), "zip bomb"),
    # the directory says 1000 bytes; the data inflates to 64 MiB: reading stops at 1000 (bad CRC)
    "lying_size": (
        _archive({"config.json": CONFIG, "model.weights.h5": ZEROS}, {"model.weights.h5": 1000}),
        "",
    ),
    "nested": (_archive({"config.json": CONFIG, "model.weights.h5": _archive({"inner.h5": ZEROS})}), ""),
    "many_members": (_archive({f"layer{i}.bin": b"" for i in range(1001)}), "1001 members"),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_import_keras_refuses_zip_bombs(case, tmp_path, monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, KERAS_PLUGINS)
    data, expected = BOMBS[case]
    source = tmp_path / f"{case}.keras"
    source.write_bytes(data)
    (tmp_path / "recipe.toml").write_text(RECIPE)
    before = tree(tmp_path)
    output = tmp_path / "out.safetensors"
    tracemalloc.start()
    try:
        result = invoke(
            ["import-keras", str(source), "--recipe", str(tmp_path / "recipe.toml"), "-o", str(output)]
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    line = refused(*result, [str(source)])
    assert expected in line
    assert tree(tmp_path) == before and not output.exists()
    assert peak < len(ZEROS) // 2, f"{case}: {peak} bytes traced: the bomb was inflated"


def test_a_lying_member_is_never_read_past_its_declared_size():
    from ctframe_resnet_v2.keras_files import KerasFileError, _read_member

    data = _archive({"model.weights.h5": ZEROS}, {"model.weights.h5": 1000})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        tracemalloc.start()
        try:
            with pytest.raises((KerasFileError, zipfile.BadZipFile)):
                _read_member(archive, "model.weights.h5")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8 * 2**20


def test_a_real_sized_archive_passes_the_checks(tmp_path):
    from ctframe_resnet_v2.keras_files import check_archive

    weights = np.random.default_rng(0).normal(size=2**18).astype(np.float32).tobytes()  # barely compresses
    path = tmp_path / "model.keras"
    path.write_bytes(
        _archive({"metadata.json": b"{}" * 600, "config.json": CONFIG * 100, "model.weights.h5": weights})
    )
    check_archive(path)  # no error
    check_archive(Path(__file__))  # not a zip: nothing to check
