"""ctframe built-in plugin: the study's dense classifier head (``component = "dense"``)."""

from ctframe import hookimpl
from ctframe_dense_head.head import DenseHead, DenseHeadOptions, build_dense_head

__all__ = ["DenseHead", "DenseHeadOptions", "build_dense_head"]


@hookimpl
def ctframe_register_heads(register):
    register(
        "dense",
        build_dense_head,
        DenseHeadOptions,
        "Global pooling -> Dense(1024, ReLU, L2 0.01) -> BatchNorm -> Dropout(0.5) -> sigmoid/softmax output",
    )
