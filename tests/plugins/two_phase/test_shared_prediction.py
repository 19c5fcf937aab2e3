"""Prediction through the shared frozen prefix (issue 24, item 1): a fine-tuned model and the initial one
share their first segments bit for bit, and predicting both through that prefix once gives each model's
own probabilities (fp32; BatchNorm folded per part: FP32_PROBABILITY_ATOL)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ctframe_resnet_v2.model import ARCHITECTURES, Architecture

from ctframe.runtime.model import set_trainable_layers
from ctframe.runtime.predict import predict_dataset
from ctframe.runtime.shared_prefix import predict_shared, shared_segments
from tests.plugins.two_phase.test_trainer_prefix_cache import ARCH, make_model, make_splits
from tests.tolerances import FP32_PROBABILITY_ATOL


@pytest.fixture(autouse=True)
def tiny_resnet(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, ARCH, Architecture((2, 2, 2, 2), 0, filters=(4, 8, 8, 8)))


def _finetuned(model, last: int = 20, seed: int = 1) -> dict[str, torch.Tensor]:
    """``model``'s state with its last ``last`` layers' and its head's parameters and statistics moved."""
    twin = make_model()
    twin.load_state_dict(model.state_dict())
    set_trainable_layers(twin.backbone, last)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in twin.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
        for name, buffer in twin.named_buffers():
            if "running_mean" in name and name.startswith("head"):
                buffer.add_(0.1)
    return {k: v.clone() for k, v in twin.state_dict().items()}


def test_the_shared_prefix_ends_where_the_first_changed_segment_starts():
    model = make_model()
    segments = list(model.backbone.segments())
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    shared = shared_segments(model, [initial, _finetuned(model)])
    assert 0 < shared < len(segments)
    assert shared_segments(model, [initial, _finetuned(model, last=len(model.backbone.layers))]) == 0
    assert shared_segments(model, [initial, initial]) == len(segments)  # only the heads could differ
    assert shared_segments(model, [initial]) == 0  # one model: nothing to share


@pytest.mark.parametrize("last", [20, 5])
def test_shared_prediction_equals_each_models_own(last):
    model = make_model()
    states = [{k: v.clone() for k, v in model.state_dict().items()}, _finetuned(model, last)]
    dataset = make_splits().test
    shared = shared_segments(model, states)
    together = predict_shared(model, states, dataset, shared=shared, device="cpu", batch_size=5)
    for key, value in states[0].items():  # the model is left holding the first state, unchanged
        assert torch.equal(model.state_dict()[key], value)
    for state, found in zip(states, together, strict=True):
        model.load_state_dict(state)
        alone = predict_dataset(model, dataset, device="cpu", batch_size=7)
        assert found.sample_ids == alone.sample_ids
        np.testing.assert_array_equal(found.labels, alone.labels)
        np.testing.assert_allclose(
            found.probabilities, alone.probabilities, atol=FP32_PROBABILITY_ATOL, rtol=0
        )
    assert not np.allclose(together[0].probabilities, together[1].probabilities)  # two different models


def _classifiers(states: list[dict[str, torch.Tensor]]) -> list:
    models = []
    for state in states:
        model = make_model()
        model.load_state_dict(state)
        models.append(model.eval())
    return models


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_explaining_through_the_memo_runs_the_prefix_once_per_image_and_changes_no_map(method):
    import ctframe_gradcam

    from ctframe.registry.plugins import build_registry
    from ctframe.runtime.explaining import cam_maps
    from ctframe.runtime.prefix_memo import PrefixMemo, sharing_classifiers

    model = make_model()
    states = [{k: v.clone() for k, v in model.state_dict().items()}, _finetuned(model, last=5)]
    plain, sources = _classifiers(states), _classifiers(states)
    sharing = sharing_classifiers(sources)
    memo = sharing[0].backbone.memo
    assert isinstance(memo, PrefixMemo) and sharing[1].backbone.memo is memo
    seen, plain_seen = [], []  # images through the first convolution, with and without the memo

    def counter(into: list):
        return lambda _module, inputs: into.append(len(inputs[0]))

    for source in sources:
        source.backbone.conv1_conv.register_forward_pre_hook(counter(seen))
    for own in plain:
        own.backbone.conv1_conv.register_forward_pre_hook(counter(plain_seen))
    images = torch.randint(
        0, 256, (6, 3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    registry = build_registry(extra=[ctframe_gradcam], selection="")
    for own, shared in zip(plain, sharing, strict=True):
        targets = [0, 1, 1, 0, 1, 0]
        expected = cam_maps(own, images, targets, method, registry=registry, batch_size=4)
        found = cam_maps(shared, images, targets, method, registry=registry, batch_size=4)
        np.testing.assert_allclose(found, expected, atol=1e-5, rtol=0)  # fp32 rounding of the prefix
        assert found.max() > 0  # a real map, not an empty one on both sides
    # the second model's plain images come from the memo (score-CAM's masked copies are new images)
    assert sum(seen) <= sum(plain_seen) - len(images)
    if method == "gradcam":
        assert sum(seen) == len(images)
    # a layer of the shared part explained, or nothing shared: each model as it is
    everything = _finetuned(model, last=len(model.backbone.layers))
    alone = _classifiers([states[0], everything])
    assert sharing_classifiers(alone) == alone
