"""``ctframe export``: ONNX and torch.export files that compute what the PyTorch model computes.

Two tiny real runs (folder_split demo data, random weights, 1 + 1 epochs): ResNet50V2 at 32 px and
torchvision's resnet18 at 64 px. Each export is checked by ctframe itself; the tests check
it again, independently, with onnxruntime and a re-loaded pt2 program at batch sizes 1, 3 and 8.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ctframe.commands.main import main
from ctframe.registry.plugins import get_registry
from ctframe.runtime.inference import read_files
from ctframe.runtime.loading import load_model
from ctframe.runtime.predict import predict_dataset
from ctframe.runtime.recalibration import calibrated_probabilities
from ctframe.storage.modelfile import find_model, reseal_model_file
from ctframe.workflows.export import TOLERANCE
from tests.conftest import REPO, install_distribution

PLUGINS = "folder_split,resnet_v2,torchvision,dense_head,two_phase,classification_metrics,export,gradcam"
pytestmark = pytest.mark.filterwarnings("ignore:No complete tensor found")  # torch.export.save, harmless
TINY = [
    "dataset.cache=none",
    "head.units=16",
    "trainer.initial.epochs=1",
    "trainer.finetuned.epochs=1",
    "trainer.progress=false",
    "evaluation.bootstrap=20",
]
BACKBONES = {
    "resnet50v2": ["dataset.image_size=32"],
    "resnet18": [
        "dataset.image_size=64",
        "backbone.component=torchvision",
        "backbone.arch=resnet18",
    ],
}


def trained_run(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A completed tiny run per backbone, trained once per session (test_explain uses them too)."""
    folder = tmp_path_factory.getbasetemp() / f"export-runs-{name}"
    runs = folder / "runs"
    if not runs.is_dir():
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CTFRAME_PLUGINS", PLUGINS)
            torch.set_num_threads(2)
            arguments = ["run", str(REPO / "recipes" / "quickstart.toml"), "--output", str(runs)]
            for value in [f"dataset.root={folder / 'demo'}", *TINY, *BACKBONES[name]]:
                arguments += ["--set", value]
            assert main(arguments) == 0
    (run,) = runs.iterdir()
    return run


@pytest.fixture(autouse=True)
def _plugins(monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)


def _test_files(run: Path) -> list[Path]:
    with open(run / "predictions_finetuned.csv", newline="", encoding="utf-8") as handle:
        return [Path(row["file"]) for row in csv.DictReader(handle)]


def _reference(run: Path) -> tuple[torch.Tensor, np.ndarray]:
    """The run's test images as the model reads them, and the PyTorch model's fp32 probabilities as
    ctframe predict gives them (recalibrated)."""
    loaded = load_model(find_model(run))
    read = read_files(loaded.info, _test_files(run)[:12], "error", get_registry())
    images = torch.stack([read.images[i][0] for i in range(len(read.images))])
    raw = predict_dataset(loaded.classifier, read.images, device="cpu").probabilities
    info = loaded.info  # the quickstart recalibrates: exports carry the same temperature in their graph
    return images, calibrated_probabilities(raw, info.calibration, info.positive_index)


def _batches(run_file, images: torch.Tensor, expected: np.ndarray) -> float:
    worst = 0.0
    start = 0
    for size in (1, 3, 8):
        got = np.asarray(run_file(images[start : start + size].numpy()), dtype=np.float64)
        assert got.shape == (size, 2)
        worst = max(worst, float(np.abs(got - expected[start : start + size]).max()))
        start += size
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_onnx_and_pt2_exports_match_pytorch_on_test_images_at_batch_1_3_8(
    backbone, tmp_path_factory, tmp_path, capsys
):
    import onnx
    import onnxruntime

    run = trained_run(tmp_path_factory, backbone)
    images, expected = _reference(run)
    assert np.ptp(expected[:, 1]) > 1e-3  # probabilities that vary, so agreeing on them means something
    onnx_file, pt2_file = tmp_path / "model.onnx", tmp_path / "model.pt2"
    assert main(["export", str(run), "--format", "onnx", "-o", str(onnx_file), "--opset", "18"]) == 0
    assert main(["export", str(run), "--format", "pt2", "-o", str(pt2_file)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("check on 12 images of the run's test split, batches 1/3/8: max |p - p_torch|") == 2

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.name == "images" and given.type == "tensor(uint8)"
    assert isinstance(given.shape[0], str) and given.shape[1:] == list(images.shape[1:])
    onnx_diff = _batches(lambda x: session.run(None, {"images": x})[0], images, expected)

    program = torch.export.load(str(pt2_file)).module()
    pt2_diff = _batches(lambda x: program(torch.from_numpy(x)).detach().numpy(), images, expected)
    print(f"{backbone}: max abs probability difference onnx {onnx_diff:.2e}, pt2 {pt2_diff:.2e}")
    assert onnx_diff <= TOLERANCE and pt2_diff <= TOLERANCE

    metadata = {p.key: p.value for p in onnx.load(str(onnx_file), load_external_data=False).metadata_props}
    assert json.loads(metadata["class_names"]) == ["COVID", "non-COVID"]
    assert metadata["positive_class"] == "non-COVID" and json.loads(metadata["threshold"]) == 0.5
    assert json.loads(metadata["input"])["dtype"] == "uint8"
    assert json.loads(metadata["input"])["shape"] == ["batch", *images.shape[1:]]
    sidecar = json.loads((tmp_path / "model.onnx.json").read_text())
    assert sidecar["exporter"] == "onnx"
    assert sidecar["model"]["backbone"] == ("resnet50v2" if backbone == "resnet50v2" else "torchvision")
    assert sidecar["check"]["max_abs_diff"] <= TOLERANCE and sidecar["check"]["batches"] == [1, 3, 8]
    extra = {"ctframe.json": ""}
    torch.export.load(str(pt2_file), extra_files=extra)
    assert json.loads(json.loads(extra["ctframe.json"])["class_names"]) == ["COVID", "non-COVID"]
    # an export leaves the machine: the data's local paths (and the run's) stay behind
    root = json.loads((run / "models" / "finetuned.json").read_text())["input"]["dataset"]["options"]["root"]
    reading = sidecar["reading"]
    assert reading["options"]["root"] is None and "root" in reading["local_paths_left_out"]
    assert sidecar["model"]["file"] == "finetuned.json"
    point, stored = sidecar["operating_point"], json.loads((run / "models" / "finetuned.json").read_text())
    assert point["threshold"] == stored["threshold"]
    assert point["threshold_choice"] == stored["threshold_choice"]
    assert point["calibration"] == {"method": "none"} and point["conformal"] is None
    assert json.loads(metadata["operating_point"]) == point  # in the ONNX file itself too
    for written in (onnx_file, tmp_path / "model.onnx.json", pt2_file, tmp_path / "model.pt2.json"):
        assert root.encode() not in written.read_bytes() and str(run).encode() not in written.read_bytes()


@pytest.mark.slow
def test_a_compiled_backbone_exports_its_eager_module(tmp_path_factory, tmp_path, capsys):
    run = trained_run(tmp_path_factory, "resnet18")
    model = tmp_path / "compiled" / "finetuned.json"
    model.parent.mkdir()
    source = find_model(run)
    shutil.copy(source.with_suffix(".safetensors"), model.with_suffix(".safetensors"))
    record = json.loads(source.read_text())
    record["backbone"]["options"]["compile"] = True
    model.write_text(json.dumps(record))
    reseal_model_file(model)  # a deliberate edit, sealed again as its owner would
    assert load_model(model).classifier.backbone._compiled_call_impl is not None  # really compiled
    out = tmp_path / "compiled.pt2"
    # Away from its run, the model has no test predictions: the check images must be given.
    assert main(["export", str(model), "--format", "pt2", "-o", str(out)]) == 2
    assert "pass images with --images" in capsys.readouterr().err
    images = [argument for p in _test_files(run)[:5] for argument in ("--images", str(p))]
    assert main(["export", str(model), "--format", "pt2", "-o", str(out), *images]) == 0
    assert "check on 5 images of the given images" in capsys.readouterr().out and out.is_file()


def test_bad_formats_and_options_are_one_line_errors(tmp_path, capsys):
    run = tmp_path / "no-such-run"  # the exporter and its options are checked before the model is read
    assert main(["export", str(run), "--format", "torchscript", "-o", str(tmp_path / "m")]) == 2
    assert "--format 'torchscript': no such exporter; available: onnx, pt2" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "pt2", "--opset", "17", "-o", str(tmp_path / "m")]) == 2
    assert "exporter 'pt2': option opset: Extra inputs are not permitted" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "onnx", "--opset", "3", "-o", str(tmp_path / "m")]) == 2
    assert "option opset" in capsys.readouterr().err and not list(tmp_path.iterdir())


THIRD_PARTY = '''
"""A third-party exporter package: a torch.export program under another name, and a broken twin."""

import torch

from ctframe import NoOptions, hookimpl


class TinyExporter:
    suffix = ".tiny"

    def export(self, module, example, path, metadata):
        batch = torch.export.Dim("batch", min=1)
        torch.export.save(torch.export.export(module, (example,), dynamic_shapes=({0: batch},)), str(path))

    def load(self, path):
        module = torch.export.load(str(path)).module()
        return lambda images: module(torch.from_numpy(images)).detach().numpy()


class SkewedExporter(TinyExporter):
    def load(self, path):
        run = super().load(path)
        return lambda images: run(images) + 1e-3  # a file that does not compute the model


@hookimpl
def ctframe_register_exporters(register):
    register("tiny", lambda options, context: TinyExporter(), NoOptions, "torch.export, renamed")
    register("skewed", lambda options, context: SkewedExporter(), NoOptions, "off by 1e-3")
'''


@pytest.mark.slow
def test_a_third_party_exporter_is_listed_used_and_checked(tmp_path_factory, tmp_path, monkeypatch, capsys):
    run = trained_run(tmp_path_factory, "resnet18")
    source = tmp_path / "tiny_exporter.py"
    source.write_text(THIRD_PARTY)
    site = install_distribution(tmp_path / "site", source, "tiny_exporter", "tiny_export")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("CTFRAME_PLUGINS", f"{PLUGINS},tiny_export")
    assert main(["list-plugins", "--json", "--kind", "exporter"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {entry["component"]: entry for entry in listing["components"]}
    assert set(by_name) == {"onnx", "pt2", "tiny", "skewed"} and listing["broken"] == []
    assert by_name["tiny"]["plugin"] == "tiny_export" and by_name["tiny"]["package"] == "tiny_exporter"

    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run), "--format", "tiny"]) == 0  # default output: <key><suffix> here
    assert "tiny: finetuned.tiny" in capsys.readouterr().out
    assert json.loads((tmp_path / "finetuned.tiny.json").read_text())["exporter"] == "tiny"

    assert main(["export", str(run), "--format", "skewed", "-o", str(tmp_path / "skewed.tiny")]) == 2
    error = capsys.readouterr().err
    assert "differs from the PyTorch model by up to 0.001" in error and "not written" in error
    assert not list(tmp_path.glob("*skewed*"))  # neither the file nor its temporary
    # a looser bound is the user's explicit choice, and the sidecar records it
    assert main(["export", str(run), "--format", "skewed", "-o", "skewed.tiny", "--tolerance", "0.01"]) == 0
    assert json.loads((tmp_path / "skewed.tiny.json").read_text())["check"]["tolerance"] == 0.01
