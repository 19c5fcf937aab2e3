"""``ctframe explain`` and ``ctframe.runtime.explaining``: CAMs from registered explainers, frozen backbones
too."""

from __future__ import annotations

import csv
import sys
import types

import ctframe_gradcam
import numpy as np
import pytest
import torch
from torch import nn

from ctframe import NoOptions, hookimpl
from ctframe.commands.main import main
from ctframe.registry.plugins import build_registry
from ctframe.runtime.explaining import ExplainError, cam_layer, cam_maps, make_explainer, method_name, overlay
from ctframe.runtime.loading import load_model
from ctframe.runtime.model import Classifier
from ctframe.storage.modelfile import find_model
from tests.core.test_export import PLUGINS, trained_run

SIZE = 32
HALF = SIZE // 2
TOP_RIGHT = 1  # quadrant order: top-left, top-right, bottom-left, bottom-right


def quadrant_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with a flat bright square in a random quadrant other than the top-right (a distractor);
    class 1 also has a checkerboard patch somewhere in the top-right quadrant (the class signal)."""
    generator = torch.Generator().manual_seed(seed)
    images = (torch.randn(count, 3, SIZE, SIZE, generator=generator) * 25 + 100).clamp(0, 255)
    labels = torch.arange(count) % 2
    rows, columns = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checker = ((rows + columns) % 2 * 255).float()

    def corner(low: int) -> int:
        return low + int(torch.randint(0, HALF - 8, (1,), generator=generator))

    for index in range(count):
        qy, qx = [(0, 0), (1, 0), (1, 1)][int(torch.randint(0, 3, (1,), generator=generator))]
        y, x = corner(qy * HALF), corner(qx * HALF)
        images[index, :, y : y + 8, x : x + 8] = 230
        if labels[index] == 1:
            y, x = corner(0), corner(HALF)
            images[index, :, y : y + 8, x : x + 8] = checker
    return images.to(torch.uint8), labels


class TinyBackbone(nn.Module):
    out_features = 16

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.out = nn.ReLU()

    @property
    def cam_layer(self) -> nn.Module:
        return self.out

    @property
    def layers(self) -> list:
        return []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv2(torch.relu(self.conv1(images.float() / 127.5 - 1))))


class MeanHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def quadrant_model() -> Classifier:
    """Trained until it separates the classes (150 full-batch Adam steps, a few seconds), then frozen
    as a two-phase trainer leaves a backbone: no parameter of it requires grad."""
    torch.manual_seed(0)
    images, labels = quadrant_images(256, seed=0)
    model = Classifier(TinyBackbone(), MeanHead(), ("plain", "checker"))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        loss = nn.functional.binary_cross_entropy_with_logits(model(images)[:, 0], labels.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.backbone.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra=[ctframe_gradcam], selection="")


def quadrant_mass(maps: np.ndarray) -> np.ndarray:
    """Share of each map's mass per quadrant, ``(N, 4)``."""
    mass = np.stack(
        [maps[:, :HALF, :HALF], maps[:, :HALF, HALF:], maps[:, HALF:, :HALF], maps[:, HALF:, HALF:]], axis=1
    ).sum(axis=(2, 3))
    return mass / mass.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "layercam"])
def test_cam_mass_peaks_in_the_quadrant_holding_the_class_signal(quadrant_model, registry, method):
    images, labels = quadrant_images(64, seed=1)
    with torch.no_grad():
        accuracy = ((quadrant_model(images)[:, 0] > 0).long() == labels).float().mean().item()
    assert accuracy > 0.95  # the model did learn the signal, so its CAM can be judged
    positives = images[labels == 1]
    flags = [p.requires_grad for p in quadrant_model.parameters()]
    with torch.inference_mode():  # a caller in inference mode still gets maps
        maps = cam_maps(quadrant_model, positives, [1] * len(positives), method, registry=registry)
    assert maps.shape == (len(positives), SIZE, SIZE) and maps.min() >= 0 and maps.max() <= 1
    shares = quadrant_mass(maps)
    print(f"{method}: mean share per quadrant {shares.mean(axis=0).round(3)}")
    assert (shares.argmax(axis=1) == TOP_RIGHT).mean() >= 0.9
    assert shares[:, TOP_RIGHT].mean() > 0.5
    # the explanation leaves the model as it found it: flags restored, no gradients left behind
    assert [p.requires_grad for p in quadrant_model.parameters()] == flags
    assert all(p.grad is None for p in quadrant_model.parameters())


class _WholeGraph:
    """The same explainer, asking for gradients with respect to the images (the whole graph)."""

    input_gradients = True

    def __init__(self, explainer):
        self.explainer = explainer

    def __call__(self, model, layer, images, targets):
        assert images.requires_grad
        return self.explainer(model, layer, images, targets)


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_the_graph_starts_at_the_cam_layer_and_gives_the_whole_graphs_maps(quadrant_model, registry, method):
    """Nothing before the CAM layer is kept for the backward pass (memory: docs/performance.md), and the
    maps are those of the whole graph: a CAM only needs the gradient at the layer."""
    images, _ = quadrant_images(8, seed=2)
    explainer = make_explainer(method, registry=registry)
    early = []
    handle = quadrant_model.backbone.conv1.register_forward_hook(lambda m, i, out: early.append(out))
    try:
        cut = cam_maps(quadrant_model, images, [1] * 8, explainer)
        assert early and not any(out.requires_grad for out in early)
        early.clear()
        whole = cam_maps(quadrant_model, images, [1] * 8, _WholeGraph(explainer))
        assert early and all(out.requires_grad for out in early)
    finally:
        handle.remove()
    np.testing.assert_allclose(cut, whole, atol=1e-6)  # fp32 both ways: the same head backward


def test_a_model_the_prediction_loop_ran_can_still_be_explained(quadrant_model, registry):
    """The core's prediction loop runs (and may convert) the model in inference mode, which leaves
    inference tensors behind; explain runs right after it, on the same model."""
    import copy

    from ctframe.runtime.predict import predict_dataset

    model = copy.deepcopy(quadrant_model)
    images = quadrant_images(4, seed=4)[0]
    before = cam_maps(model, images, [1] * 4, "gradcam", registry=registry)
    predict_dataset(model, [(image, -1, str(i)) for i, image in enumerate(images)], device="cpu")
    after = cam_maps(model, images, [1] * 4, "gradcam", registry=registry)
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_a_frozen_backbone_gives_the_package_no_gradient_without_the_input_fix(quadrant_model, registry):
    """The pitfall cam_maps avoids: with every parameter frozen and an input that needs no grad, the
    target layer's output has no gradient and grad-cam fails."""
    from ctframe.runtime.explaining import ClassScores

    model = ClassScores(quadrant_model)
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    explainer = make_explainer("gradcam", registry=registry)
    images = quadrant_images(2, seed=2)[0].float()
    try:
        with pytest.raises(RuntimeError, match="does not require grad"):
            explainer(model, quadrant_model.backbone.cam_layer, images, [1, 1])
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)


def test_method_names_and_backbones_without_a_cam_layer(registry):
    assert method_name("gradcam++") == "gradcampp" and method_name("Score-CAM") == "scorecam"
    with pytest.raises(Exception, match="--method 'nocam': no such explainer; available: ablationcam"):
        make_explainer("nocam", registry=registry)

    class Plain(nn.Module):
        pass

    with pytest.raises(ExplainError, match="names no cam_layer"):
        cam_layer(Plain())


class CentreExplainer:
    """A third-party CAM method: always the centre of the image."""

    def __call__(self, model, layer, images, targets):
        maps = np.zeros((len(images), *images.shape[-2:]), dtype=np.float32)
        maps[:, SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4] = 1.0
        return maps


def test_a_third_party_explainer_is_used_through_its_hook(quadrant_model):
    plugin = types.ModuleType("centre_cam")

    @hookimpl
    def ctframe_register_explainers(register):
        register("centre", lambda options, context: CentreExplainer(), NoOptions, "the middle, always")

    plugin.ctframe_register_explainers = ctframe_register_explainers
    registry = build_registry(extra=[plugin, ctframe_gradcam], selection="")
    assert registry.get("explainer", "centre").plugin == "centre_cam" and not registry.broken()
    images = quadrant_images(3, seed=3)[0]
    maps = cam_maps(quadrant_model, images, [0, 1, 1], "centre", registry=registry)
    assert maps[:, SIZE // 2, SIZE // 2].tolist() == [1.0, 1.0, 1.0] and maps[:, 0, 0].tolist() == [0.0] * 3


@pytest.mark.parametrize(
    ("component", "options", "layer"),
    [
        ("resnet50v2", {"weights": "none"}, "post_relu"),
        ("torchvision", {"arch": "resnet18", "weights": "none"}, "model.layer4"),
        ("torchvision", {"arch": "densenet121", "weights": "none"}, "final_relu"),
        ("torchvision", {"arch": "mobilenet_v3_small", "weights": "none"}, "model.features"),
        ("torchvision", {"arch": "regnet_y_400mf", "weights": "none"}, "model.trunk_output"),
    ],
)
def test_each_backbone_family_names_the_map_its_head_pools(component, options, layer):
    """``cam_layer``'s output is exactly what the backbone returns: the last map before pooling."""
    from ctframe.base.contracts import BuildContext
    from ctframe.base.kinds import Kind

    registry = build_registry(selection="resnet_v2,torchvision")
    found = registry.get(Kind.BACKBONE, component)
    backbone = found.factory(
        found.options.model_validate(options), BuildContext(seed=0, device="cpu", recipe_dir=".")
    ).eval()
    assert dict(backbone.named_modules())[layer] is backbone.cam_layer
    seen = []
    handle = backbone.cam_layer.register_forward_hook(lambda _m, _i, output: seen.append(output))
    with torch.no_grad():
        features = backbone(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    handle.remove()
    assert len(seen) == 1 and torch.equal(seen[0].float(), features)


@pytest.mark.slow
def test_explain_writes_an_overlay_per_image_and_class_and_a_csv(
    tmp_path_factory, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)
    run = trained_run(tmp_path_factory, "resnet18")
    images = sorted((run.parent.parent / "demo" / "COVID").glob("*"))[:3]
    output = tmp_path / "cams"
    arguments = ["explain", str(run), *map(str, images), "--output", str(output), "--method", "gradcam++"]
    assert main([*arguments, "--target", "all"]) == 0
    printed = capsys.readouterr()
    assert "wrote 6 overlays (2x2 maps) for 3 images" in printed.out and "warning" not in printed.err
    with open(output / "explanations.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == [str(p) for p in images]
    assert list(rows[0])[-4:] == ["p_COVID", "p_non-COVID", "overlay_COVID", "overlay_non-COVID"]
    for row in rows:
        assert abs(float(row["p_COVID"]) + float(row["p_non-COVID"]) - 1) < 1e-6
        for column in ("overlay_COVID", "overlay_non-COVID"):
            from PIL import Image

            with Image.open(output / row[column]) as picture:
                assert picture.mode == "RGB" and picture.size == (64, 64)
    assert len(list(output.glob("*.png"))) == 6

    assert main([*arguments[:-2], "--target", "pneumonia", "--force"]) == 2  # --force: cams/ holds files
    assert "--target 'pneumonia': not a class of this model; choose from predicted, all, COVID" in (
        capsys.readouterr().err
    )

    # the gallery's entry point: one image as the model's reader gives it -> an RGB uint8 overlay
    loaded = load_model(find_model(run))
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    picture = overlay(loaded, image, target_index=1, method="gradcam")
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8


@pytest.mark.slow
def test_explain_warns_when_the_feature_map_is_one_pixel(tmp_path_factory, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTFRAME_PLUGINS", PLUGINS)
    run = trained_run(tmp_path_factory, "resnet50v2")  # 32 px through a stride-32 network: 1 x 1
    image = sorted((run.parent.parent / "demo" / "non-COVID").glob("*"))[0]
    assert main(["explain", str(run), str(image), "-o", str(tmp_path / "cams")]) == 0
    printed = capsys.readouterr()
    assert "feature map is 1x1 for 32x32 images" in printed.err and "wrote 1 overlays" in printed.out


def test_the_explainers_register_without_importing_torch():
    import subprocess

    code = (
        "import sys; from ctframe.registry.plugins import build_registry;"
        "registry = build_registry(selection='export,gradcam');"
        "assert not registry.broken(), registry.broken();"
        "print(len(registry.all_components()), 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["11", "False"]  # 2 exporters and 9 CAM methods, torch not loaded
