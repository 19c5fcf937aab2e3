"""What a dataset or weights plugin needs: the one train / val / test split and k-fold assignment
every dataset shares (seeded, stratified, groups never on both sides), recorded writes inside a run
(resume refuses the run when such a file changes) and downloads checked against a digest."""

from ctframe.data.splits import (
    SPLITS,
    Group,
    Item,
    assign_all_to_test,
    assign_fold,
    assign_splits,
    build_groups,
    check_fractions,
    split_or_fold,
)
from ctframe.storage.download import download_checked, file_digest
from ctframe.storage.integrity import write_recorded

__all__ = [
    "SPLITS",
    "Group",
    "Item",
    "assign_all_to_test",
    "assign_fold",
    "assign_splits",
    "build_groups",
    "check_fractions",
    "download_checked",
    "file_digest",
    "split_or_fold",
    "write_recorded",
]
