"""What a dataset or weights plugin needs to keep files honest: recorded writes inside a run (resume
refuses the run when such a file changes) and downloads checked against a digest."""

from ctframe.storage.download import download_checked, file_digest
from ctframe.storage.integrity import write_recorded

__all__ = ["download_checked", "file_digest", "write_recorded"]
