"""Keras reference runner: build, export and time the Keras ResNetV2 models.

Run it as its own process with the project's Python (``python keras_reference.py COMMAND ...``), never
import it: tensorflow and torch must not share a process. It imports neither torch nor the ctframe
plugin package, prints one JSON object on stdout and writes files only where told.

Commands:

* ``describe``: layer names, parameter count and the trainable weights after unfreezing the last N layers;
* ``export``: random-weight model saved as legacy ``.h5``, ``.weights.h5`` and ``.keras``, plus random
  0..255 inputs and the model's outputs (``io.npz``) and ``describe``'s facts (``describe.json``);
* ``predict``: load a weights file into a fresh model and save its outputs on the images of an ``.npz``;
* ``bench``: images/s of ``predict`` and ``train_on_batch`` at the given batch sizes;
* ``export-classifier``: whole classifiers of the study's shape (base, GlobalAveragePooling, Dense ReLU
  with L2, BatchNormalization, Dropout, Dense output) with random weights, saved with ``model.save`` as
  legacy ``.h5`` and ``.keras``: ``functional`` (the base's layers inlined, one sigmoid output) and
  ``sequential`` (the base nested, a softmax over ``--classes`` outputs); inputs and ``predict``'s
  probabilities in ``io.npz`` (also on the images of ``--inputs``, so one process serves a whole test);
* ``predict-model``: load a whole-model file and save ``predict``'s outputs on the images of an ``.npz``.
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

ARCHITECTURES = ("resnet50v2", "resnet101v2", "resnet152v2")


def _keras():
    import keras
    import tensorflow as tf

    if "torch" in sys.modules:  # the whole point of this process is to keep them apart
        raise SystemExit("keras_reference: torch was imported next to tensorflow; refusing to continue")
    return tf, keras


def _set_threads(tf, threads: int) -> None:
    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _build(keras, arch: str, size: int):
    constructor = {
        "resnet50v2": keras.applications.ResNet50V2,
        "resnet101v2": keras.applications.ResNet101V2,
        "resnet152v2": keras.applications.ResNet152V2,
    }[arch]
    return constructor(include_top=False, weights=None, input_shape=(size, size, 3))


def _describe(model, last: int) -> dict:
    layers = model.layers
    for layer in layers:
        layer.trainable = True
    for layer in layers[: len(layers) - last]:
        layer.trainable = False
    trainable = sorted(w.path for w in model.trainable_weights)
    for layer in layers:
        layer.trainable = True
    return {
        "layers": [layer.name for layer in layers],
        "params": int(sum(int(w.numpy().size) for w in model.weights)),
        "last": last,
        "trainable_after_last": trainable,
        "keras_version": _keras()[1].__version__,
    }


def _randomise_batchnorm(keras, model, rng) -> None:
    """Random gamma/beta/moving statistics so that a wrong BatchNorm mapping cannot pass unnoticed."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = (w.numpy() for w in layer.weights)
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0.0, 0.1, beta.shape).astype("float32"),
                    rng.normal(0.0, 0.1, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, variance.shape).astype("float32"),
                ]
            )


def _all_layers(model) -> list:
    """Every layer, nested models' layers included (a Sequential holding the base)."""
    layers = []
    for layer in model.layers:
        layers.extend(_all_layers(layer) if hasattr(layer, "layers") else [layer])
    return layers


def _classifier(keras, base, units: int, outputs: int, nested: bool):
    """The study's head on ``base``; ``nested`` keeps the base as one layer of a Sequential."""
    layers = keras.layers
    head = [
        layers.GlobalAveragePooling2D(),
        layers.Dense(units, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)),
        layers.BatchNormalization(),
        layers.Dropout(0.5),
        layers.Dense(outputs, activation="sigmoid" if outputs == 1 else "softmax"),
    ]
    if nested:
        return keras.Sequential([keras.Input(base.input_shape[1:]), base, *head])
    x = base.output
    for layer in head:
        x = layer(x)
    return keras.Model(base.input, x)


def _randomise_classifier(keras, model, rng, preprocessed) -> float:
    """Random BatchNorm statistics everywhere, random head biases, and an output layer scaled so that
    the logits of ``preprocessed`` spread over about +-2: probabilities far from 0 and 1 test something."""
    import numpy as np

    _randomise_batchnorm(keras, type("Flat", (), {"layers": _all_layers(model)})(), rng)
    hidden, output = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.Dense)][-2:]
    kernel, bias = hidden.get_weights()
    hidden.set_weights([kernel, rng.normal(0.0, 0.1, bias.shape).astype("float32")])
    penultimate = keras.Model(model.inputs, output.input)
    features = np.asarray(penultimate.predict(preprocessed, verbose=0))
    kernel, _ = output.get_weights()
    logits = features @ kernel
    scale = 1.5 / max(float(logits.std(axis=0).mean()), 1e-3)
    kernel = (kernel * scale).astype("float32")
    output.set_weights([kernel, (-(features @ kernel).mean(axis=0)).astype("float32")])
    return scale


def _images(rng, batch: int, size: int):
    """0..255 images of different brightness, contrast and structure (uniform noise alone gives every
    image nearly the same features, and a tiny spread says little)."""
    import numpy as np

    ramp = np.linspace(0.0, 1.0, size, dtype="float32")
    images = []
    for _ in range(batch):
        low, high = sorted(rng.uniform(0, 255, 2))
        gradient = np.outer(ramp, ramp)[..., None] * rng.uniform(0.0, 1.0, 3)
        pattern = gradient + rng.uniform(0, 1, (size, size, 3))
        images.append(low + (high - low) * pattern / pattern.max())
    return np.stack(images).astype("float32")


def command_export_classifier(args: argparse.Namespace) -> dict:
    import numpy as np

    tf, keras = _keras()
    _set_threads(tf, args.threads)
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = _images(rng, args.batch, args.size)
    preprocessed = keras.applications.resnet_v2.preprocess_input(images.copy())
    results: dict = {"images": images}
    extra = None
    if args.inputs:
        extra = np.load(args.inputs)["images"].astype("float32")
        extra = keras.applications.resnet_v2.preprocess_input(extra)
    scales = {}
    for variant, nested, outputs in (("functional", False, 1), ("sequential", True, args.classes)):
        model = _classifier(keras, _build(keras, args.arch, args.size), args.units, outputs, nested)
        scales[variant] = _randomise_classifier(keras, model, rng, preprocessed)
        model.save(out / f"{variant}.h5")  # the legacy whole-model format: weights plus model_config
        model.save(out / f"{variant}.keras")
        results[variant] = np.asarray(model.predict(preprocessed, verbose=0))
        if extra is not None:
            results[f"{variant}_inputs"] = np.asarray(model.predict(extra, verbose=0))
    np.savez(out / "io.npz", **results)
    versions = {"keras_version": keras.__version__, "tensorflow_version": tf.__version__}
    return {"out": str(out), "output_scale": scales, **versions}


def command_predict_model(args: argparse.Namespace) -> dict:
    import numpy as np

    tf, keras = _keras()
    _set_threads(tf, args.threads)
    model = keras.models.load_model(args.model, compile=False)
    images = np.load(args.inputs)["images"].astype("float32")
    preprocessed = keras.applications.resnet_v2.preprocess_input(images.copy())
    np.savez(args.out, outputs=np.asarray(model.predict(preprocessed, verbose=0)))
    return {"out": args.out}


def _save_legacy_h5(model, path: Path) -> None:
    """The layout of Keras's published weight files: one group per layer named by the layer."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


def command_describe(args: argparse.Namespace) -> dict:
    tf, keras = _keras()
    _set_threads(tf, args.threads)
    return _describe(_build(keras, args.arch, args.size), args.last)


def command_export(args: argparse.Namespace) -> dict:
    import numpy as np

    tf, keras = _keras()
    _set_threads(tf, args.threads)
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = _build(keras, args.arch, args.size)
    _randomise_batchnorm(keras, model, rng)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / args.arch
    formats = set(args.formats.split(","))
    if "h5" in formats:
        _save_legacy_h5(model, stem.with_suffix(".h5"))
    if "weights.h5" in formats:
        model.save_weights(f"{stem}.weights.h5")
    if "keras" in formats:
        model.save(f"{stem}.keras")
    images = rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32")
    preprocessed = keras.applications.resnet_v2.preprocess_input(images.copy())
    outputs = np.asarray(model(preprocessed, training=False))
    np.savez(out / "io.npz", images=images, outputs=outputs)
    facts = _describe(model, args.last)
    (out / "describe.json").write_text(json.dumps(facts))
    return {
        "out": str(out),
        "params": facts["params"],
        "keras_version": facts["keras_version"],
        "tensorflow_version": tf.__version__,
    }


def command_predict(args: argparse.Namespace) -> dict:
    import numpy as np

    tf, keras = _keras()
    _set_threads(tf, args.threads)
    model = _build(keras, args.arch, args.size)
    model.load_weights(args.weights)
    images = np.load(args.inputs)["images"]
    preprocessed = keras.applications.resnet_v2.preprocess_input(images.copy())
    np.savez(args.out, outputs=np.asarray(model(preprocessed, training=False)))
    return {"out": args.out}


def _images_per_second(step, batch: int, iterations: int) -> float:
    """Images/s of the fastest of ``iterations`` calls after a warm-up call (tracing, allocation)."""
    step()
    fastest = float("inf")
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        fastest = min(fastest, time.perf_counter() - start)
    return batch / fastest


def command_bench(args: argparse.Namespace) -> dict:
    import numpy as np

    tf, keras = _keras()
    _set_threads(tf, args.threads)
    keras.utils.set_random_seed(0)
    base = _build(keras, args.arch, args.size)
    features = keras.layers.GlobalAveragePooling2D()(base.output)
    model = keras.Model(base.input, keras.layers.Dense(1, activation="sigmoid")(features))
    model.compile(optimizer=keras.optimizers.SGD(0.001), loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        images = rng.uniform(-1, 1, (batch, args.size, args.size, 3)).astype("float32")
        labels = rng.integers(0, 2, (batch, 1)).astype("float32")
        results[f"predict_{batch}"] = _images_per_second(
            lambda images=images: base.predict_on_batch(images), batch, args.iterations
        )
        results[f"train_{batch}"] = _images_per_second(
            lambda images=images, labels=labels: model.train_on_batch(images, labels), batch, args.iterations
        )
    return {"images_per_s": results, "keras_version": keras.__version__, "tensorflow_version": tf.__version__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("describe", "export", "predict", "bench", "export-classifier", "predict-model"):
        sub = commands.add_parser(name)
        sub.add_argument("--arch", choices=ARCHITECTURES, default="resnet101v2")
        sub.add_argument("--size", type=int, default=224)
        sub.add_argument("--threads", type=int, default=0, help="intra-op threads (0: tensorflow's default)")
        sub.add_argument("--last", type=int, default=150, help="layers unfrozen for the trainable list")
    export = commands.choices["export"]
    export.add_argument("--out", required=True)
    export.add_argument("--batch", type=int, default=2)
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--formats", default="h5,weights.h5,keras")
    predict = commands.choices["predict"]
    predict.add_argument("--weights", required=True, help="a file model.load_weights accepts")
    predict.add_argument("--inputs", required=True, help=".npz with 'images' (N, H, W, 3) in 0..255")
    predict.add_argument("--out", required=True, help=".npz to write 'outputs' to")
    classifier = commands.choices["export-classifier"]
    classifier.add_argument("--out", required=True)
    classifier.add_argument("--batch", type=int, default=8)
    classifier.add_argument("--seed", type=int, default=0)
    classifier.add_argument("--units", type=int, default=1024, help="width of the hidden Dense layer")
    classifier.add_argument("--classes", type=int, default=3, help="softmax outputs of the sequential one")
    classifier.add_argument("--inputs", help=".npz of more 'images' (0..255) to predict: <variant>_inputs")
    model_predict = commands.choices["predict-model"]
    model_predict.add_argument("--model", required=True, help="a file keras.models.load_model accepts")
    model_predict.add_argument("--inputs", required=True, help=".npz with 'images' (N, H, W, 3) in 0..255")
    model_predict.add_argument("--out", required=True, help=".npz to write 'outputs' to")
    bench = commands.choices["bench"]
    bench.add_argument("--batches", default="16,32")
    bench.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args(argv)
    handlers = {
        "describe": command_describe,
        "export": command_export,
        "predict": command_predict,
        "bench": command_bench,
        "export-classifier": command_export_classifier,
        "predict-model": command_predict_model,
    }
    handler = handlers[args.command]
    print(json.dumps(handler(args)))


if __name__ == "__main__":
    main()
