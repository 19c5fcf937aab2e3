"""What every :mod:`keras_reference` command starts from: keras itself (never next to torch), its thread
count, a ResNetV2 base with random weights, and random BatchNorm statistics.

Imported by the runner's modules only, by plain name: the runner is a script, so its folder is on
``sys.path``, and none of them goes through the plugin package (which imports ctframe).
"""

from __future__ import annotations

import sys

ARCHITECTURES = ("resnet50v2", "resnet101v2", "resnet152v2")


def load_keras():
    import keras
    import tensorflow as tf

    if "torch" in sys.modules:  # the whole point of this process is to keep them apart
        raise SystemExit("keras_reference: torch was imported next to tensorflow; refusing to continue")
    return tf, keras


def set_threads(tf, threads: int) -> None:
    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def build_base(keras, arch: str, size: int):
    constructor = {
        "resnet50v2": keras.applications.ResNet50V2,
        "resnet101v2": keras.applications.ResNet101V2,
        "resnet152v2": keras.applications.ResNet152V2,
    }[arch]
    return constructor(include_top=False, weights=None, input_shape=(size, size, 3))


def randomise_batchnorm(keras, model, rng) -> None:
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
