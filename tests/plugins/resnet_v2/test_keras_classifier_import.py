"""Whole Keras classifiers (ResNetV2 base + the study's dense head) import as whole-classifier weights.

Keras runs in one subprocess per module (tensorflow must never share a process with torch): it builds
small classifiers of the study's shape (ResNet50V2 at 32 px, a 16-unit head) with random weights, BatchNorm
moving statistics included, saves each with ``model.save`` as legacy ``.h5`` and ``.keras``, and keeps
``predict``'s probabilities on its own images and on every image of a tiny demo data set.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from ctframe_dense_head.keras import load_keras_layers
from ctframe_dense_head.options import DenseHeadOptions
from ctframe_resnet_v2.factory import build_resnet_v2
from ctframe_resnet_v2.keras_files import KerasLayer
from ctframe_resnet_v2.keras_subprocess import keras_available, run_keras_reference
from ctframe_resnet_v2.options import ResNetV2Options

from ctframe import BuildContext
from ctframe.commands.main import main
from ctframe.registry.recipe import load_recipe
from ctframe.runtime.predict import predict_dataset
from ctframe.storage.checkpoints import read_state_dict
from ctframe.workflows.assembly import build_data, build_model, make_context

PLUGINS = "folder_split,resnet_v2,dense_head,two_phase,classification_metrics"
MAX_ABS_DIFFERENCE = 1e-4  # fp32 probabilities, ctframe against Keras's predict
needs_keras = pytest.mark.skipif(not keras_available(), reason="needs tensorflow and keras: ctframe[keras]")
RECIPE = """\
metrics = ["accuracy"]

[run]
seed = 3
device = "cpu"

[dataset]
component = "folder_split"
root = "demo"
classes = ["COVID", "non-COVID"]
positive_class = "non-COVID"
image_size = 32
cache = "none"

[backbone]
component = "resnet50v2"
weights = "none"

[head]
component = "dense"
units = 16

[trainer]
component = "two_phase"
progress = false
tensorboard = false

[trainer.initial]
epochs = 0

[trainer.finetuned]
epochs = 0

[evaluation]
bootstrap = 20
"""


@pytest.fixture(autouse=True)
def _plugins(monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A folder with the recipe, tiny demo data, the Keras files and Keras's probabilities (``io.npz``)."""
    from ctframe_folder_split.demo import generate_demo_data

    folder = tmp_path_factory.mktemp("keras_classifier")
    (folder / "recipe.toml").write_text(RECIPE)
    generate_demo_data(folder / "demo", per_class=24, size=48, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CTFRAME_PLUGINS", PLUGINS)
        recipe = load_recipe(folder / "recipe.toml")
        data = build_data(recipe, make_context(recipe, run_dir=None))
    items = [item for split in (data.train, data.val, data.test) for item in split]
    images = np.stack([item[0].permute(1, 2, 0).numpy() for item in items]).astype(np.float32)
    (folder / "ids.json").write_text(json.dumps([item[2] for item in items]))
    np.savez(folder / "demo_images.npz", images=images)
    keras = folder / "keras"
    run_keras_reference(
        ["export-classifier", "--arch", "resnet50v2", "--size", "32", "--units", "16", "--batch", "8",
         "--classes", "3", "--out", str(keras), "--inputs", str(folder / "demo_images.npz")],
        timeout=600,
        threads=1,
    )
    return folder


def _import(study: Path, name: str, *extra: str) -> Path:
    output = study / f"{name}.safetensors"
    arguments = ["import-keras", str(study / "keras" / name), "--recipe", str(study / "recipe.toml")]
    assert main([*arguments, "--output", str(output), *extra]) == 0
    return output


def _two_columns(probabilities: np.ndarray) -> np.ndarray:
    """Keras's single sigmoid output as ctframe's two class columns."""
    if probabilities.shape[1] > 1:
        return probabilities
    return np.concatenate([1.0 - probabilities, probabilities], 1)


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize(
    ("file_name", "classes"),
    [("functional.h5", ()), ("functional.keras", ()), ("sequential.h5", ("a", "b", "c")),
     ("sequential.keras", ("a", "b", "c"))],
)
def test_imported_classifier_gives_keras_probabilities(study: Path, file_name: str, classes: tuple, capsys):
    extra = ("--classes", ",".join(classes)) if classes else ()
    weights = _import(study, file_name, *extra)
    printed = capsys.readouterr()
    assert "warning" not in printed.err and "head layers dense" in printed.out
    recipe = load_recipe(study / "recipe.toml")
    model = build_model(recipe, make_context(recipe, run_dir=None), classes or ("COVID", "non-COVID"))
    model.load_state_dict(read_state_dict(weights), strict=True)
    reference = np.load(study / "keras" / "io.npz")
    images = torch.from_numpy(reference["images"]).permute(0, 3, 1, 2).contiguous()
    predicted = predict_dataset(model, [(image, 0, str(i)) for i, image in enumerate(images)], device="cpu")
    expected = _two_columns(reference[file_name.split(".")[0]])
    assert expected.min() < 0.2 and expected.max() > 0.8  # not saturated: the comparison means something
    difference = float(np.abs(predicted.probabilities - expected).max())
    print(f"{file_name}: max abs difference {difference:.2e}")
    assert difference <= MAX_ABS_DIFFERENCE


@needs_keras
@pytest.mark.keras
def test_zero_epoch_run_from_imported_weights_evaluates_the_keras_model(study: Path, tmp_path: Path):
    weights = _import(study, "functional.keras")
    runs = tmp_path / "runs"
    arguments = ["run", str(study / "recipe.toml"), "--output", str(runs), "--set", f"run.weights={weights}"]
    assert main(arguments) == 0
    (run,) = runs.iterdir()
    assert "evaluating the model as built" in (run / "run.log").read_text()
    with open(run / "predictions_as_built.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keras = dict(zip(json.loads((study / "ids.json").read_text()),
                     np.load(study / "keras" / "io.npz")["functional_inputs"][:, 0], strict=True))
    assert rows and all(row["sample_id"] in keras for row in rows)
    difference = max(abs(float(row["p_non-COVID"]) - float(keras[row["sample_id"]])) for row in rows)
    print(f"run on {len(rows)} test images: max abs difference {difference:.2e}")
    assert difference <= MAX_ABS_DIFFERENCE


def _add_layer(handle: h5py.File, name: str, kernel: np.ndarray, in_config: bool) -> None:
    """An extra Dense in a legacy whole-model file: in its configuration (model order) or only as weights."""
    root = handle["model_weights"]
    names = [n.decode() if isinstance(n, bytes) else n for n in root.attrs["layer_names"]]
    root.attrs["layer_names"] = [n.encode() for n in [*names, name]]
    group = root.create_group(name)
    group.attrs["weight_names"] = [f"{name}/kernel".encode(), f"{name}/bias".encode()]
    group.create_dataset(f"{name}/kernel", data=kernel)
    group.create_dataset(f"{name}/bias", data=np.zeros(kernel.shape[1], np.float32))
    if in_config:  # between the hidden Dense and the BatchNormalization, where a Dense can do harm
        config = json.loads(handle.attrs["model_config"])
        layers = config["config"]["layers"]
        at = next(i for i, layer in enumerate(layers) if layer["class_name"] == "BatchNormalization"
                  and layer["config"]["name"] == "batch_normalization")
        layers.insert(at, {"class_name": "Dense", "config": {"name": name, "activation": "linear"}})
        handle.attrs["model_config"] = json.dumps(config)


@needs_keras
@pytest.mark.keras
def test_layers_that_are_not_loaded_are_named_in_one_warning(study: Path, capsys):
    source = study / "keras" / "functional.h5"
    extended = study / "keras" / "extended.h5"
    extended.write_bytes(source.read_bytes())
    with h5py.File(extended, "r+") as handle:
        _add_layer(handle, "aux_probe", np.ones((16, 16), np.float32), in_config=True)
        _add_layer(handle, "stray_dense", np.ones((16, 1), np.float32), in_config=False)
    _import(study, "extended.h5")
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "2 layer(s) with weights not loaded: aux_probe, stray_dense" in warnings[0]


@needs_keras
@pytest.mark.keras
def test_backbone_weights_from_a_whole_classifier_warn_and_name_the_head(study: Path, caplog):
    logger = logging.getLogger("test_keras_classifier_import")
    context = BuildContext(seed=0, device="cpu", recipe_dir=study, logger=logger)
    keras_file = study / "keras" / "functional.h5"
    classifier = _import(study, "functional.keras")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        build_resnet_v2("resnet50v2", ResNetV2Options(weights=keras_file), context)
        build_resnet_v2("resnet50v2", ResNetV2Options(weights=classifier), context)
    keras_line, torch_line = (record.getMessage() for record in caplog.records)
    assert "not loaded: dense, batch_normalization, dense_1" in keras_line and "import-keras" in keras_line
    assert "not loaded: head.hidden, head.norm, head.output" in torch_line and "[run] weights" in torch_line


@needs_keras
@pytest.mark.keras
def test_files_that_do_not_fit_are_one_line_errors(study: Path, tmp_path: Path, capsys):
    recipe = str(study / "recipe.toml")
    keras = study / "keras"
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5")
    cases = [
        ([str(tmp_path / "missing.h5")], "does not exist"),
        ([str(tmp_path / "garbage.h5")], "not an HDF5 file"),
        ([str(keras / "functional.h5"), "--set", "head.units=32"], "set head.units = 16"),
        ([str(keras / "functional.h5"), "--set", "head.batchnorm=false"], "set head.batchnorm = true"),
        ([str(keras / "functional.h5"), "--set", "head.bn_epsilon=0.01"], "set head.bn_epsilon = 0.001"),
        ([str(keras / "functional.h5"), "--set", "head.activation=gelu"], "set head.activation = 'relu'"),
        ([str(keras / "functional.h5"), "--set", "backbone.component=resnet101v2"], "no weights for layer"),
        ([str(keras / "sequential.h5")], "give 3 class names"),
        ([str(keras / "sequential.keras"), "--classes", "a,b"], "give 3 class names"),
    ]
    for arguments, expected in cases:
        code = main(["import-keras", *arguments, "--recipe", recipe, "-o", str(tmp_path / "out.safetensors")])
        message = capsys.readouterr().err.strip()
        assert code == 2 and expected in message and "\n" not in message, (arguments, message)
    output = str(tmp_path / "x.pt")
    code = main(["import-keras", str(keras / "functional.h5"), "--recipe", recipe, "-o", output])
    assert code == 2 and "name a .safetensors file" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


def test_dense_head_mapping_transposes_kernels_and_takes_batchnorm_statistics():
    """Without Keras: made-up Keras layers land where the head's forward pass uses them."""
    from ctframe_dense_head.head import DenseHead

    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    gamma, beta, mean = (rng.normal(size=4).astype(np.float32) for _ in range(3))
    variance = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    out_kernel, out_bias = rng.normal(size=(4, 1)).astype(np.float32), np.float32([0.3])
    layers = [
        KerasLayer("global_average_pooling2d", "GlobalAveragePooling2D", {}),
        KerasLayer("dense", "Dense", {"activation": "relu"}, {"kernel": kernel, "bias": bias}),
        KerasLayer("batch_normalization", "BatchNormalization", {"epsilon": 0.001},
                   {"gamma": gamma, "beta": beta, "moving_mean": mean, "moving_variance": variance}),
        KerasLayer("dropout", "Dropout", {}),
        KerasLayer("dense_1", "Dense", {"activation": "sigmoid"}, {"kernel": out_kernel, "bias": out_bias}),
    ]
    head = DenseHead(6, 2, DenseHeadOptions(units=4)).eval()
    assert load_keras_layers(head, layers) == ["dense", "batch_normalization", "dense_1"]
    features = rng.normal(size=(3, 6)).astype(np.float32)
    hidden = np.maximum(features @ kernel + bias, 0)
    expected = ((hidden - mean) / np.sqrt(variance + 0.001) * gamma + beta) @ out_kernel + out_bias
    with torch.no_grad():
        logits = head(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
