"""Images that turn out unreadable only when they are decoded, one file at a time.

Readers check what is cheap when they read (names, headers, checksums) and decode in ``__getitem__``,
often in a loader worker process. A worker's exception reaches the main process as a wrapped message
(``Caught DataError in DataLoader worker process 0``) that no longer names the file, and it would sink
the whole batch. So every item is fetched through :class:`Guarded`: a :class:`ctframe.DataError` raised
by the item (a :class:`ctframe.BadFileError` names the file and the reason) comes back as an
:class:`Unreadable` marker instead, and the main process settles it: it raises the reader's one-line
error (``--on-bad-image error``) or leaves the item out and lists it (``skip``). No second pass over the
files is needed, and any third-party reader gets the same behaviour by raising ``BadFileError``.
Other exceptions are bugs, not bad files, and propagate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ctframe.base.errors import BadFileError, DataError

OnUnreadable = Callable[[str, str], None]
"""``on_unreadable(file, reason)``: an item left out (``--on-bad-image skip``)."""


@dataclass(frozen=True)
class Unreadable:
    """Stands in for an item whose decoding failed; plain strings, so it crosses process boundaries."""

    file: str
    reason: str
    message: str
    """The reader's one-line error."""


class Guarded:
    """``dataset`` with every item's :class:`DataError` turned into an :class:`Unreadable` marker."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except BadFileError as error:
            return Unreadable(error.file, error.reason, str(error))
        except DataError as error:  # a reader that names no file: its message is the reason
            message = str(error)
            return Unreadable(f"image {index + 1} of {len(self.dataset)}", message, message)


def settle(marker: Unreadable, on_unreadable: OnUnreadable | None) -> None:
    """Raise the reader's error (no ``on_unreadable``: error mode), or report the item as left out."""
    if on_unreadable is None:
        raise DataError(marker.message)
    on_unreadable(marker.file, marker.reason)


def decoded_items(dataset: Any, on_unreadable: OnUnreadable | None) -> list[Any]:
    """Every readable item of ``dataset``, decoded in this process, in order (for consumers that need
    all images in memory, such as ``ctframe explain``)."""
    items = Guarded(dataset)
    kept = []
    for index in range(len(items)):
        item = items[index]
        if isinstance(item, Unreadable):
            settle(item, on_unreadable)
        else:
            kept.append(item)
    return kept
