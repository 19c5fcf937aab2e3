"""``ctframe evaluate --name`` names one folder under RUN/external/: nothing that would leave it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctframe import RunError
from ctframe.workflows.external import evaluation_folder_name


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../metrics", "a\\b"])
def test_a_name_that_leaves_external_is_refused_in_one_line(name):
    with pytest.raises(RunError, match="name one folder under external/") as error:
        evaluation_folder_name(name, Path("/data/ucsd"))
    assert "\n" not in str(error.value)


def test_a_plain_name_and_the_default_are_kept():
    assert evaluation_folder_name("ucsd-2", Path("/data/x")) == "ucsd-2"
    assert evaluation_folder_name(None, Path("/data/ucsd")) == "ucsd"
