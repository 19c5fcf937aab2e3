"""ctframe built-in plugin: the ``onnx`` and ``pt2`` exporters (``ctframe export --format ...``).

Importing it stays cheap: torch, onnx and onnxruntime load when an export runs. TorchScript is not
offered: torch deprecates it in favour of torch.export, whose ``.pt2`` files this plugin writes.
"""

from __future__ import annotations

from ctframe import hookimpl

from .options import OnnxOptions, Pt2Options


def build_onnx(options: OnnxOptions, context):
    from .onnx_exporter import OnnxExporter

    return OnnxExporter(options)


def build_pt2(options: Pt2Options, context):
    from .pt2_exporter import Pt2Exporter

    return Pt2Exporter(options)


@hookimpl
def ctframe_register_exporters(register) -> None:
    register(
        "onnx",
        build_onnx,
        OnnxOptions,
        "ONNX via torch.onnx.export(dynamo=True), dynamic batch, metadata in metadata_props; checked "
        "with onnxruntime",
    )
    register(
        "pt2",
        build_pt2,
        Pt2Options,
        "torch.export program (torch.export.save), dynamic batch; checked by loading it back",
    )
