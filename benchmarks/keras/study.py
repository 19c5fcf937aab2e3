"""The study's Keras pipeline, timed: run by ``benchmarks/bench_study.py`` in its own process.

Never import it next to torch (tensorflow and torch must not share a process). It reads a folder with
one sub-folder per class, splits it as the recipe does (stratified: ``--test-fraction`` for test, then
``--val-fraction`` of the rest for validation), decodes and resizes every image once (``tf.data`` cache,
as ctframe caches decoded images), augments training images with Keras's preprocessing layers
(rotation, horizontal flip, zoom), and trains the study's model in two phases: ResNetV2 base (random
weights: speed does not depend on them) + GlobalAveragePooling + Dense(1024, ReLU, L2 0.01) +
BatchNormalization + Dropout(0.5) + Dense(1, sigmoid); phase 1 with the base frozen (RMSprop 1e-4),
phase 2 with its last 150 layers unfrozen (RMSprop 1e-5); after each phase ``predict`` on the test split
(the study reports both models). Every ``fit`` validates after each epoch. Prints one JSON line: seconds
and images per phase (a phase's seconds are its ``fit``'s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


def split(root: Path, test_fraction: float, val_fraction: float, seed: int):
    import numpy as np

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(classes):
        files = sorted(str(f) for f in (root / name).iterdir() if f.suffix.lower() in SUFFIXES)
        files = [files[i] for i in rng.permutation(len(files))]
        test = round(len(files) * test_fraction)
        val = round((len(files) - test) * val_fraction)
        parts["test"] += [(f, label) for f in files[:test]]
        parts["val"] += [(f, label) for f in files[test : test + val]]
        parts["train"] += [(f, label) for f in files[test + val :]]
    return classes, parts


def dataset(tf, items, size: int, batch: int, augment=None, shuffle: bool = False):
    files = tf.constant([f for f, _ in items])
    labels = tf.constant([[float(label)] for _, label in items])

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.cast(tf.image.resize(image, (size, size)), tf.uint8), label

    data = tf.data.Dataset.from_tensor_slices((files, labels)).map(load).cache()
    if shuffle:
        data = data.shuffle(len(items), seed=0, reshuffle_each_iteration=True)
    data = data.map(lambda image, label: (tf.cast(image, tf.float32), label))
    if augment is not None:
        data = data.batch(batch).map(lambda images, label: (augment(images, training=True), label))
    else:
        data = data.batch(batch)
    return data.prefetch(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--arch", default="resnet101v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--initial-epochs", type=int, default=2)
    parser.add_argument("--finetuned-epochs", type=int, default=1)
    parser.add_argument("--unfreeze-last", type=int, default=150)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--rotation-degrees", type=float, default=15.0)
    parser.add_argument("--zoom-range", type=float, default=0.1)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--eager", action="store_true", help="run_eagerly: no graph tracing (most of a tiny smoke run)"
    )
    args = parser.parse_args()
    started = time.perf_counter()

    import keras
    import tensorflow as tf

    if "torch" in sys.modules:
        raise SystemExit("keras study: torch was imported next to tensorflow; refusing to continue")
    if args.threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    _, parts = split(Path(args.root), args.test_fraction, args.val_fraction, seed=0)
    augment = None
    if not args.no_augment:
        augment = keras.Sequential([
            keras.layers.RandomRotation(args.rotation_degrees / 360.0, fill_mode="nearest"),
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomZoom(args.zoom_range, fill_mode="nearest"),
        ])
    train = dataset(tf, parts["train"], args.size, args.batch_size, augment, shuffle=True)
    val = dataset(tf, parts["val"], args.size, args.batch_size)
    test = dataset(tf, parts["test"], args.size, args.batch_size)

    constructor = {
        "resnet50v2": keras.applications.ResNet50V2,
        "resnet101v2": keras.applications.ResNet101V2,
        "resnet152v2": keras.applications.ResNet152V2,
    }[args.arch]
    base = constructor(include_top=False, weights=None, input_shape=(args.size, args.size, 3))
    inputs = keras.Input((args.size, args.size, 3))
    x = base(keras.applications.resnet_v2.preprocess_input(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(1024, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01))(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.5)(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    built = time.perf_counter() - started

    phases = {}
    for key, epochs, lr, last in (
        ("initial", args.initial_epochs, 1e-4, 0),
        ("finetuned", args.finetuned_epochs, 1e-5, args.unfreeze_last),
    ):
        base.trainable = last > 0
        for layer in base.layers[: len(base.layers) - last]:
            layer.trainable = False
        optimizer = keras.optimizers.RMSprop(lr)
        model.compile(
            optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"], run_eagerly=args.eager
        )
        start = time.perf_counter()
        model.fit(train, validation_data=val, epochs=epochs, verbose=0)
        phases[key] = {"seconds": time.perf_counter() - start, "images": len(parts["train"]) * epochs}
        start = time.perf_counter()
        model.predict(test, verbose=0)
        phases[f"test_{key}"] = {"seconds": time.perf_counter() - start, "images": len(parts["test"])}
    print(json.dumps({
        "phases": phases,
        "build_seconds": built,
        "split": {name: len(items) for name, items in parts.items()},
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }))


if __name__ == "__main__":
    main()
