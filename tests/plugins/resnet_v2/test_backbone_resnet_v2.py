"""ResNetV2 facts that must hold without tensorflow: Keras's layer list, shapes, numerics, weight files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from ctframe_resnet_v2.factory import build_resnet_v2
from ctframe_resnet_v2.keras_files import VARIABLES
from ctframe_resnet_v2.model import ARCHITECTURES, BN_EPSILON, Architecture, ResNetV2, stem
from ctframe_resnet_v2.options import ResNetV2Options
from ctframe_resnet_v2.weights import WeightsError, keras_weights_of, load_weights, save_keras_h5
from safetensors.torch import save_file
from torch import nn

from ctframe import BuildContext, CtframeError
from ctframe.runtime import precision as runtime
from tests.tolerances import BF16_FEATURE_RTOL, FP32_FOLDED_RTOL


@pytest.fixture(scope="module", autouse=True)
def narrow_architectures():
    """Narrow ResNetV2 variants: Keras's structure and names, a fraction of the bytes to write and read."""
    ARCHITECTURES["tinyv2"] = Architecture((2, 2, 2, 2), 0, filters=(4, 8, 16, 32))
    ARCHITECTURES["tinyv2_deeper"] = Architecture((2, 2, 3, 2), 0, filters=(4, 8, 16, 32))
    yield
    del ARCHITECTURES["tinyv2"], ARCHITECTURES["tinyv2_deeper"]


def _randomised(arch: str) -> ResNetV2:
    """Random BatchNorm parameters and statistics, so that a wrong mapping changes outputs."""
    model = ResNetV2(arch)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def tiny(narrow_architectures) -> ResNetV2:
    torch.manual_seed(0)
    return _randomised("tinyv2")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (2, 3, 64, 64), generator=generator, dtype=torch.uint8)


def _skeleton(arch: str) -> ResNetV2:
    """The module structure without allocating or initialising weights."""
    with torch.device("meta"):
        return ResNetV2(arch)


def test_layer_list_is_keras_model_layers() -> None:
    names = [layer.name for layer in _skeleton("resnet101v2").layers]
    assert len(names) == 377
    assert names[:5] == ["input_layer", "conv1_pad", "conv1_conv", "pool1_pad", "pool1_pool"]
    assert names[-150] == "conv4_block13_2_relu"
    assert names[-2:] == ["post_bn", "post_relu"]
    # Keras lists each shortcut layer one step before the add, next to 3_conv.
    block1 = names[names.index("conv3_block1_2_relu") :][:4]
    assert block1 == ["conv3_block1_2_relu", "conv3_block1_0_conv", "conv3_block1_3_conv", "conv3_block1_out"]
    pools = [(name, names[i + 1]) for i, name in enumerate(names) if name.startswith("max_pooling2d")]
    assert pools == [
        ("max_pooling2d", "conv2_block3_3_conv"),
        ("max_pooling2d_1", "conv3_block4_3_conv"),
        ("max_pooling2d_2", "conv4_block23_3_conv"),
    ]
    assert len(_skeleton("resnet50v2").layers) == 190
    assert len(_skeleton("resnet152v2").layers) == 564


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_parameter_count_is_keras_count(arch: str) -> None:
    assert _skeleton(arch).keras_param_count() == ARCHITECTURES[arch].keras_params
    assert ARCHITECTURES["resnet101v2"].keras_params == 42_626_560


def test_strides_sit_in_the_last_block_of_each_stack(tiny: ResNetV2, images: torch.Tensor) -> None:
    sizes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for stack_index, stack in enumerate(tiny.stacks):
        for block_index, block in enumerate(stack):
            name = f"conv{stack_index + 2}_block{block_index + 1}"
            record = lambda _m, _i, y, name=name: sizes.__setitem__(name, tuple(y.shape[1:]))  # noqa: E731
            hooks.append(block.register_forward_hook(record))
    with torch.no_grad():
        output = tiny(images)
    for hook in hooks:
        hook.remove()
    # 64 px: conv1 -> 32, pool1 -> 16; each stack halves in its last block except conv5.
    assert sizes["conv2_block1"] == (16, 16, 16) and sizes["conv2_block2"] == (16, 8, 8)
    assert sizes["conv3_block1"] == (32, 8, 8) and sizes["conv3_block2"] == (32, 4, 4)
    assert sizes["conv4_block2"] == (64, 2, 2) and sizes["conv5_block2"] == (128, 2, 2)
    assert tuple(output.shape) == (2, 128, 2, 2) and tiny.out_features == 128


def test_biases_batchnorm_and_shortcuts_follow_keras() -> None:
    model = ResNetV2("resnet50v2")
    block1, block3 = model.stacks[0][0], model.stacks[0][2]
    assert model.conv1_conv.bias is not None and block1.shortcut_conv.bias is not None
    assert block1.conv1.bias is None and block1.conv2.bias is None and block1.conv3.bias is not None
    assert block3.shortcut_conv is None and block3.stride == 2 and block3.conv2.stride == (2, 2)
    assert model.stacks[3][2].stride == 1
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.eps == BN_EPSILON and module.momentum == pytest.approx(0.01)
    kernel = model.conv1_conv.weight  # glorot uniform: limit sqrt(6 / (fan_in + fan_out))
    limit = np.sqrt(6 / (7 * 7 * 3 + 7 * 7 * 64))
    assert kernel.abs().max() <= limit and kernel.abs().max() > 0.9 * limit
    assert torch.count_nonzero(model.conv1_conv.bias) == 0


def test_stem_max_pool_pads_with_zeros_like_keras() -> None:
    model = ResNetV2("resnet50v2")
    with torch.no_grad():
        model.conv1_conv.weight.zero_()
        model.conv1_conv.bias.fill_(-1.0)  # conv1 output is -1 everywhere
        pooled = stem(model.conv1_conv, torch.zeros(1, 3, 32, 32))
    # Windows that overlap the padding see Keras's zeros; a -inf padded pool would give -1 there too.
    assert pooled[0, 0, 0, 0] == 0 and pooled[0, 0, -1, -1] == -1
    assert tuple(pooled.shape) == (1, 64, 8, 8)


def test_input_normalisation_is_x_over_127_5_minus_1(tiny: ResNetV2) -> None:
    images = torch.tensor([0, 127.5, 255]).view(1, 3, 1, 1).expand(1, 3, 32, 32).contiguous()
    with torch.no_grad():
        via_forward = tiny(images)
        normalised = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 32, 32).contiguous()
        direct = tiny.features(normalised)
    torch.testing.assert_close(via_forward, direct)


def _write_keras3_weights(model: ResNetV2, path: Path, with_names: bool) -> None:
    """Keras 3's ``.weights.h5`` layout: ``layers/<class key>/vars/<i>``, keys counted per class."""
    weights = keras_weights_of(model)
    counters: dict[str, int] = {}
    with h5py.File(path, "w") as handle:
        for layer in model.layers:
            if layer.module is None:
                kind = "activation"
            else:
                kind = "conv2d" if isinstance(layer.module, nn.Conv2d) else "batch_normalization"
            count = counters.get(kind, 0)
            counters[kind] = count + 1
            variables = handle.create_group(f"layers/{kind}{f'_{count}' if count else ''}/vars")
            if with_names:
                variables.attrs["name"] = layer.name
            for index, array in enumerate(weights.get(layer.name, {}).values()):
                variables.create_dataset(str(index), data=array)


def _write_keras_archive(weights_file: Path, path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
        archive.write(weights_file, "model.weights.h5")


def _assert_same_outputs(reference: ResNetV2, path: Path, images: torch.Tensor) -> None:
    model = ResNetV2(reference.arch).to(memory_format=torch.channels_last)
    load_weights(model, path)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images), rtol=1e-4, atol=1e-4)


def test_weights_round_trip_through_every_format(tiny: ResNetV2, images: torch.Tensor, tmp_path: Path):
    save_keras_h5(tiny, tmp_path / "legacy.h5")
    _write_keras3_weights(tiny, tmp_path / "named.weights.h5", with_names=True)
    _write_keras3_weights(tiny, tmp_path / "counted.weights.h5", with_names=False)
    _write_keras_archive(tmp_path / "named.weights.h5", tmp_path / "model.keras")
    state = tiny.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "state.safetensors")
    torch.save(state, tmp_path / "state.pt")
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}}, tmp_path / "classifier.pth")
    for name in ("legacy.h5", "named.weights.h5", "counted.weights.h5", "model.keras", "state.safetensors",
                 "state.pt", "classifier.pth"):
        _assert_same_outputs(tiny, tmp_path / name, images)


def test_legacy_h5_of_a_nested_keras_model_loads(tiny: ResNetV2, images: torch.Tensor, tmp_path: Path):
    """``model.save("x.h5")`` of a classifier around the base: weights under ``model_weights/<base>``."""
    path = tmp_path / "classifier.h5"
    with h5py.File(path, "w") as handle:
        root = handle.create_group("model_weights")
        root.attrs["layer_names"] = [b"input_layer", b"resnet50v2", b"dense"]
        base = root.create_group("resnet50v2")
        names = []
        for layer_name, variables in keras_weights_of(tiny).items():
            for variable, array in variables.items():
                names.append(f"{layer_name}/{variable}:0".encode())
                base.create_dataset(f"{layer_name}/{variable}:0", data=array)
        base.attrs["weight_names"] = names
        root.create_group("input_layer").attrs["weight_names"] = []
        dense = root.create_group("dense")
        dense.attrs["weight_names"] = [b"dense/kernel:0"]
        dense.create_dataset("dense/kernel:0", data=np.zeros((128, 1), np.float32))
    _assert_same_outputs(tiny, path, images)


def _error(model: ResNetV2, path: Path) -> str:
    with pytest.raises(WeightsError) as caught:
        load_weights(model, path)
    message = str(caught.value)
    assert isinstance(caught.value, CtframeError) and "\n" not in message
    return message


def test_weight_files_that_do_not_fit_are_refused_by_layer(tiny: ResNetV2, tmp_path: Path) -> None:
    save_keras_h5(tiny, tmp_path / "tiny.h5")
    message = _error(ResNetV2("tinyv2_deeper"), tmp_path / "tiny.h5")
    assert "no weights for layer 'conv4_block3_preact_bn'" in message

    with h5py.File(tmp_path / "tiny.h5", "r+") as handle:  # one kernel with the wrong width
        group = handle["conv3_block2_1_conv"]
        del group["conv3_block2_1_conv/kernel"]
        group.create_dataset("conv3_block2_1_conv/kernel", data=np.zeros((1, 1, 32, 4), np.float32))
    message = _error(ResNetV2("tinyv2"), tmp_path / "tiny.h5")
    assert "'conv3_block2_1_conv' kernel has shape (1, 1, 32, 4)" in message and "(1, 1, 32, 8)" in message

    torch.save(tiny.state_dict(), tmp_path / "tiny.pt")
    assert "(layer conv4_block3_preact_bn)" in _error(ResNetV2("tinyv2_deeper"), tmp_path / "tiny.pt")
    torch.save(ResNetV2("tinyv2_deeper").state_dict(), tmp_path / "deeper.pt")
    assert "does not have" in _error(tiny, tmp_path / "deeper.pt")


def test_unreadable_weight_files_are_clear_errors(tiny: ResNetV2, tmp_path: Path) -> None:
    assert "does not exist" in _error(tiny, tmp_path / "missing.h5")
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5 at all")
    assert "not an HDF5 file" in _error(tiny, tmp_path / "garbage.h5")
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle")
    assert "cannot read a torch state dict" in _error(tiny, tmp_path / "garbage.pt")
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pt")
    assert "flat state dict" in _error(tiny, tmp_path / "odd.pt")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    assert "no model.weights.h5" in _error(tiny, tmp_path / "empty.keras")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_dataset("x", data=np.zeros(3))
    assert "no Keras weights layout" in _error(tiny, tmp_path / "other.h5")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_exported_h5_has_keras_legacy_layout(tiny: ResNetV2, tmp_path: Path) -> None:
    save_keras_h5(tiny, tmp_path / "export.h5")
    with h5py.File(tmp_path / "export.h5") as handle:
        assert [_text(n) for n in handle.attrs["layer_names"]] == [layer.name for layer in tiny.layers]
        bn = handle["conv2_block1_preact_bn"]
        assert [_text(n) for n in bn.attrs["weight_names"]] == [
            f"conv2_block1_preact_bn/{v}" for v in VARIABLES["batch_normalization"]
        ]
        assert handle["conv1_conv/conv1_conv/kernel"].shape == (7, 7, 3, 64)
        assert len(handle["conv1_pad"].attrs["weight_names"]) == 0


def test_backbone_runs_in_the_callers_precision(tiny: ResNetV2, images: torch.Tensor) -> None:
    """Precision is the caller's (trainer or prediction loop): the backbone returns float32 either way."""
    with torch.no_grad():
        reference = tiny(images)
        with runtime.autocast("bf16", "cpu"):
            lowered = tiny(images)
    assert lowered.dtype == torch.float32
    assert not torch.equal(lowered, reference)  # bf16 really ran
    assert (lowered - reference).norm() / reference.norm() < BF16_FEATURE_RTOL


def test_bn1_and_bn2_of_every_block_fold(tiny: ResNetV2, images: torch.Tensor) -> None:
    """fp32: folded and unfolded agree to float rounding, in both memory formats."""
    from ctframe.runtime.folding import folded_batchnorm, plan_folding

    plan = plan_folding(tiny)
    blocks = [block for stack in tiny.stacks for block in stack]
    assert len(plan.pairs) == 2 * len(blocks)
    assert all(pair[1].endswith((".bn1", ".bn2")) for pair in plan.pairs)
    preact = {name for name, _ in tiny.named_modules() if name.endswith("preact_bn")}
    assert set(plan.unfoldable) == preact | {"post_bn"}  # they follow an addition, not a convolution
    with torch.no_grad():
        reference = tiny(images)
        for layout in (torch.contiguous_format, torch.channels_last):
            with folded_batchnorm(tiny.to(memory_format=layout)):
                folded = tiny(images.contiguous(memory_format=layout))
            scale = float(reference.abs().max())
            torch.testing.assert_close(folded, reference, rtol=0, atol=FP32_FOLDED_RTOL * scale)
    tiny.to(memory_format=torch.contiguous_format)


def test_precision_is_no_backbone_option() -> None:
    with pytest.raises(ValueError, match="precision"):
        ResNetV2Options(weights="none", precision="auto")
    assert "precision" in ResNetV2Options.removed_options
    with pytest.raises(ValueError, match="channels_last"):
        ResNetV2Options(weights="none", channels_last=True)
    assert "trainer" in ResNetV2Options.removed_options["channels_last"]


def test_factory_honours_options(tmp_path: Path) -> None:
    context = BuildContext(seed=0, device="cpu", recipe_dir=tmp_path)
    options = ResNetV2Options(weights="none")
    model = build_resnet_v2("tinyv2", options, context)
    assert model.conv1_conv.weight.is_contiguous()  # memory format: the trainer's / prediction's choice
    assert model._compiled_call_impl is None
    relative = ResNetV2Options.model_validate({"weights": "w/r50.h5"}, context={"base_dir": tmp_path})
    assert relative.weights == tmp_path / "w" / "r50.h5"
    with pytest.raises(WeightsError, match="does not exist"):
        build_resnet_v2("tinyv2", relative, context)


def test_importing_the_plugin_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, ctframe_resnet_v2, ctframe_torchvision; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_keras3_file_without_names_uses_class_counters(tmp_path: Path) -> None:
    """Older Keras 3 files lack the ``name`` attribute; the helper must then really omit it."""
    _write_keras3_weights(ResNetV2("tinyv2"), tmp_path / "w.weights.h5", with_names=False)
    with h5py.File(tmp_path / "w.weights.h5") as handle:
        assert "name" not in handle["layers/conv2d_3/vars"].attrs
        assert handle["layers/conv2d_3/vars/0"].shape == (1, 1, 64, 16)  # conv2_block1_0_conv
