"""Pass options from the command line: strings become the option's type, with a clear error otherwise."""

import pytest

from edgec.passes.base import PassOptionError, build_options
from edgec.passes.prune import PruneOptions


@pytest.mark.parametrize("text, value", [("false", False), ("No", False), ("0", False), ("off", False),
                                         ("true", True), ("YES", True), ("1", True)])
def test_boolean_options_read_words_not_python_truthiness(text, value):
    assert build_options(PruneOptions, {"compensate": text}, "prune").compensate is value


def test_a_bad_boolean_or_number_is_a_clear_error():
    with pytest.raises(PassOptionError, match="compensate"):
        build_options(PruneOptions, {"compensate": "maybe"}, "prune")
    with pytest.raises(PassOptionError, match="keep"):
        build_options(PruneOptions, {"keep": "half"}, "prune")
