"""The small typed objects that pass between components.

The core never looks inside a component; it only relies on these shapes:

* a **dataset** factory returns :class:`DataSplits`: class names, the positive class and
  train / val / test datasets whose items are ``(image, label, sample_id)`` with ``image`` a
  ``uint8`` tensor of shape ``(3, H, W)`` (RGB), ``label`` an ``int`` index into ``class_names``;
* a **backbone** factory returns a :class:`Backbone`: an ``nn.Module`` mapping a batch of RGB
  images (``uint8`` or float in ``0..255``, ``NCHW``) to feature maps ``(N, out_features, h, w)``;
  it normalises its own input and lists its layers in order (:class:`Layer`);
* a **head** factory returns a :class:`Head`: an ``nn.Module`` mapping feature maps to logits;
* a **trainer** factory returns a :class:`~ctframe.base.training.Trainer`, which fits a
  :class:`~ctframe.runtime.model.Classifier`
  on :class:`TrainingData` (no test split) and returns the weights of each model it wants
  evaluated (:class:`TrainedModel`); the engine predicts validation and test itself;
* a **metric** factory returns a :class:`Metric`, a callable from :class:`MetricInput` to named
  numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ctframe.base.kinds import Kind  # the kinds are declared once, in ctframe.base.kinds.KINDS
from ctframe.base.training import TrainingData

if TYPE_CHECKING:  # keep `import ctframe` free of torch
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from ctframe.base.options import Options
    from ctframe.storage.rundir import RunDirectory


@dataclass(frozen=True)
class Component:
    """One registered component: what a recipe names in ``component = "..."``."""

    kind: Kind
    name: str
    factory: Callable[..., Any]
    options: type[Options]
    description: str
    plugin: str
    """Name of the plugin that registered it."""
    check: Callable[..., None] | None = None
    """Optional ``check(options, context)``: cheap checks run before a run directory is created."""
    reader: Callable[..., FileReader] | None = None
    """Datasets only, optional: ``reader(options, context) -> FileReader``, which reads given image
    files exactly as training did (``ctframe predict`` and ``evaluate`` need it)."""


@dataclass(frozen=True)
class BuildContext:
    """What every factory receives besides its options."""

    seed: int
    device: str
    """Resolved device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``."""
    recipe_dir: Path
    run_dir: RunDirectory | None = None
    """The run directory, or ``None`` when only validating or auditing."""
    resume: bool = False
    """True when continuing an interrupted run in ``run_dir``."""
    fold: tuple[int, int] | None = None
    """``(fold, folds)`` inside ``ctframe cv``: the dataset makes fold ``fold`` of a stratified,
    group-disjoint ``folds``-fold split its test split, and says so in ``DataSplits.summary["fold"]``."""
    restoring: bool = False
    """True when the caller loads trained weights into what the factory builds (``load_model``):
    a backbone skips fetching or reading its pretrained weights."""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("ctframe"))


@dataclass(frozen=True)
class DataSplits:
    """What a dataset component returns.

    Items of ``train``, ``val`` and ``test`` are ``(image uint8 (3, H, W), label int, sample_id str)``
    and never augmented; ``augment`` (when set) is applied by the trainer to training images only.
    ``val`` is what early stopping, checkpoint choice and threshold choice may look at; ``test`` only
    ever measures.
    """

    class_names: tuple[str, ...]
    positive_class: str
    train: Dataset
    val: Dataset
    test: Dataset
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Training-time augmentation of one uint8 ``(3, H, W)`` image; ``None`` for none."""
    num_workers: int = 0
    """Loader worker processes the dataset recommends."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Sample id -> the file it came from, for predictions and reports."""
    summary: Mapping[str, Any] = field(default_factory=dict)
    """JSON-able facts about the split (counts per class and split, groups, duplicates). Under
    ``"lines"``, a list of one-line facts that ``ctframe validate`` prints."""
    groups: Mapping[str, str] = field(default_factory=dict)
    """Sample id -> group (patient, scan sequence) when samples are not independent; empty otherwise.
    Evaluation resamples whole groups for its confidence intervals when this is set, and answers per
    group as well as per image (docs/metrics.md, "The unit of decision")."""
    group_unit: str = "group"
    """What one group is ("patient", "study", "series", "sequence"): names the group-level results."""
    attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Subgroup variable -> (sample id -> value): facts about each sample that results should be broken
    down by (scanner manufacturer, reconstruction kernel, slice thickness band, site). Values are short
    display strings the dataset has already binned; never anything that identifies a person. The run
    scores its test split per value (``subgroups.json``; ``[evaluation] subgroups``)."""

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    def for_training(self) -> TrainingData:
        return TrainingData(
            self.class_names,
            self.positive_class,
            self.train,
            self.val,
            self.augment,
            self.num_workers,
            groups=self.groups,
            group_unit=self.group_unit,
        )

    def __post_init__(self) -> None:
        if self.positive_class not in self.class_names:
            raise ValueError(f"positive class {self.positive_class!r} is not one of {list(self.class_names)}")


@dataclass(frozen=True)
class ReadFiles:
    """What a :class:`FileReader` read: items ``(image, -1, sample_id)`` and the files behind them."""

    images: Dataset
    files: Mapping[str, str]
    """Sample id -> file (printable form, see :mod:`ctframe.base.filenames`)."""
    skipped: Sequence[tuple[str, str]] = ()
    """``(file, reason)`` of every file left out with ``on_bad_image="skip"``."""
    num_workers: int = 0
    """Loader worker processes worth using for ``images`` (decoding while the model runs)."""
    groups: Mapping[str, str] = field(default_factory=dict)
    """Sample id -> group, when the files themselves say which images belong together (the slices of a
    DICOM series or NIfTI volume); ``ctframe predict`` and ``evaluate`` then answer per group too.
    ``--groups CSV`` replaces it."""
    group_unit: str = "group"
    """What one of ``groups`` is ("series")."""
    attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Subgroup variable -> (sample id -> value), as :attr:`DataSplits.attributes`: ``ctframe evaluate``
    scores per value unless ``--subgroups CSV`` replaces them."""
    ignored: Mapping[str, int] = field(default_factory=dict)
    """Files under the given folders that are not for this reader (not images, DICOM for an image
    model), counted by file ending ("(none)" without one): ``ctframe predict`` says how many it left out."""


@runtime_checkable
class FileReader(Protocol):
    """A dataset component's way of reading new files as its training images were read."""

    def read(self, paths: Sequence[Path], on_bad_image: str = "error") -> ReadFiles:
        """Files and folders (searched recursively) -> decoded, canonical images in a stable order.

        ``on_bad_image="error"`` raises :class:`ctframe.DataError` naming the first unreadable file;
        ``"skip"`` leaves such files out and lists them in ``skipped``.
        """
        ...


@dataclass(frozen=True)
class Layer:
    """One entry of a backbone's ordered layer list.

    ``module`` is ``None`` for layers without parameters or state that the list still names so
    that counting from the end matches a reference model (input, padding, activation, add).
    """

    name: str
    module: nn.Module | None = None


@dataclass(frozen=True)
class Segment:
    """One link of a backbone cut into a chain (see ``Backbone.segments``)."""

    start: int
    """Index in ``backbone.layers`` of the segment's first layer."""
    module: nn.Module
    """Maps the previous segment's output (the images, for the first) to the next one's input; it owns
    the parameters of the layers from ``start`` up to the next segment's ``start``."""


@runtime_checkable
class Backbone(Protocol):
    """Feature extractor contract (implemented by an ``nn.Module``).

    Optional: ``cam_layer``, the ``nn.Module`` inside the backbone whose output is the last spatial
    feature map before the head pools (ResNetV2: ``post_relu``). ``ctframe explain`` and the report's
    Grad-CAM overlays hook it; a backbone without one cannot be explained, and works otherwise.

    Optional: ``segments() -> Sequence[Segment]``, the backbone as a chain whose composition is
    ``forward`` (the first segment starts at layer 0 and takes the images; the last returns the float32
    features). The cuts are where a trainer may store activations: a frozen prefix of whole segments
    computes the same output every epoch when nothing is augmented, so phase 2 of ``two_phase`` caches it
    and runs only the rest. A segment's modules are the backbone's own (no copies), and a segment made
    of frozen layers must be deterministic in inference mode.
    """

    out_features: int
    """Channels of the feature map ``forward`` returns."""

    @property
    def layers(self) -> Sequence[Layer]:
        """Every layer, input to output, so "the last N layers" has one meaning."""
        ...

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Head(Protocol):
    """Classifier head contract (implemented by an ``nn.Module``).

    Optional: ``reduce_features(features) -> Tensor``, the head's parameter-free first step (global
    pooling, say). A trainer that caches frozen-backbone outputs may store its result instead of the
    full feature maps; ``forward`` must then accept that reduced form as well.
    """

    num_outputs: int
    """1 for a two-class sigmoid output (probability of class index 1), else one per class."""

    def penalty(self) -> torch.Tensor:
        """Regularisation term added to the training loss (a zero tensor when there is none)."""
        ...

    def __call__(self, features: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class MetricInput:
    """What a metric sees: true labels, class probabilities, the positive class and threshold."""

    labels: np.ndarray
    probabilities: np.ndarray
    class_names: tuple[str, ...]
    positive_index: int
    threshold: float = 0.5
    """Decision threshold on the positive class's probability (two-class problems)."""


@runtime_checkable
class Metric(Protocol):
    def __call__(self, inputs: MetricInput) -> Mapping[str, Any]:
        """Named values; plain floats are bootstrapped and tabulated, other values are stored."""
        ...


@dataclass(frozen=True)
class AuditSection:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class AuditReport:
    """What a dataset plugin's ``ctframe_audit`` hook returns for ``ctframe audit``."""

    title: str
    sections: Sequence[AuditSection] = ()
    warnings: Sequence[str] = ()
