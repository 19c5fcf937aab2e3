"""The :mod:`keras_reference` commands on whole classifiers of the study's shape: ``export-classifier``
(build, randomise, save as legacy ``.h5`` and ``.keras``, record Keras's probabilities) and
``predict-model`` (a whole-model file's probabilities on saved images)."""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_reference_setup import build_base, load_keras, randomise_batchnorm, set_threads


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

    randomise_batchnorm(keras, type("Flat", (), {"layers": _all_layers(model)})(), rng)
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

    tf, keras = load_keras()
    set_threads(tf, args.threads)
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
        model = _classifier(keras, build_base(keras, args.arch, args.size), args.units, outputs, nested)
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

    tf, keras = load_keras()
    set_threads(tf, args.threads)
    model = keras.models.load_model(args.model, compile=False)
    images = np.load(args.inputs)["images"].astype("float32")
    preprocessed = keras.applications.resnet_v2.preprocess_input(images.copy())
    np.savez(args.out, outputs=np.asarray(model.predict(preprocessed, verbose=0)))
    return {"out": args.out}
