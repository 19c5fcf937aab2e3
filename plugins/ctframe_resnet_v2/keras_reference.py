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

The last two live in :mod:`keras_reference_classifier`; what every command starts from (keras, threads,
the base model) in :mod:`keras_reference_setup`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# siblings, by plain name (this file runs as a script: its folder is on sys.path); neither imports keras yet
from keras_reference_classifier import command_export_classifier, command_predict_model
from keras_reference_setup import ARCHITECTURES, build_base, load_keras, randomise_batchnorm, set_threads

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


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
        "keras_version": load_keras()[1].__version__,
    }


def _save_legacy_h5(model, path: Path) -> None:
    """The layout of Keras's published weight files: one group per layer named by the layer."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


def command_describe(args: argparse.Namespace) -> dict:
    tf, keras = load_keras()
    set_threads(tf, args.threads)
    return _describe(build_base(keras, args.arch, args.size), args.last)


def command_export(args: argparse.Namespace) -> dict:
    import numpy as np

    tf, keras = load_keras()
    set_threads(tf, args.threads)
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build_base(keras, args.arch, args.size)
    randomise_batchnorm(keras, model, rng)
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

    tf, keras = load_keras()
    set_threads(tf, args.threads)
    model = build_base(keras, args.arch, args.size)
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

    tf, keras = load_keras()
    set_threads(tf, args.threads)
    keras.utils.set_random_seed(0)
    base = build_base(keras, args.arch, args.size)
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
