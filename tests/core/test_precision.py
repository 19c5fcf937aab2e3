"""What a precision setting resolves to, and the override that tests both answers of "auto" anywhere."""

from __future__ import annotations

import pytest
import torch

from ctframe.runtime import precision
from ctframe.runtime.precision import NATIVE_BF16_ENV, autocast, autocast_dtype, resolve


def test_explicit_settings_need_no_detection():
    assert autocast_dtype("fp32", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert resolve("bf16", "cpu").reason == "set explicitly"
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        autocast_dtype("half", "cpu")


@pytest.mark.parametrize(("forced", "expected"), [("1", "bf16"), ("0", "fp32")])
def test_the_environment_forces_either_answer_of_auto(monkeypatch, forced, expected):
    monkeypatch.setenv(NATIVE_BF16_ENV, forced)
    resolution = resolve("auto", "cpu")
    assert resolution.resolved == expected and NATIVE_BF16_ENV in resolution.reason
    assert precision.native_cpu_bf16() is (expected == "bf16")


@pytest.mark.parametrize(("features", "expected"), [([], "fp32"), (["AVX512-BF16"], "bf16")])
def test_auto_follows_the_cpu_and_says_why(monkeypatch, features, expected):
    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: features)
    resolution = resolve("auto", "cpu")
    assert resolution.resolved == expected
    assert resolution.reason.startswith("CPU runs bf16 natively (AVX512-BF16)" if features else "CPU lacks")
    assert resolution.as_dict()["requested"] == "auto"


def test_fp32_turns_an_outer_autocast_off():
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype is torch.bfloat16
        with autocast("fp32", "cpu"):
            assert layer(x).dtype is torch.float32
