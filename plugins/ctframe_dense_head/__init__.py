"""ctframe built-in plugin: the study's dense classifier head (``component = "dense"``).

Registration imports only the options; torch and the module load when a run builds the head.
"""

from ctframe import hookimpl
from ctframe_dense_head.options import DenseHeadOptions

__all__ = ["DenseHeadOptions", "build_dense_head"]


def build_dense_head(options, context, in_features: int, num_classes: int):
    """The head factory (see :class:`ctframe_dense_head.head.DenseHead`)."""
    from ctframe_dense_head.head import build_dense_head as build

    return build(options, context, in_features, num_classes)


@hookimpl
def ctframe_register_heads(register):
    register(
        "dense",
        build_dense_head,
        DenseHeadOptions,
        "Global pooling -> Dense(1024, ReLU, L2 0.01) -> BatchNorm -> Dropout(0.5) -> sigmoid/softmax output",
    )
