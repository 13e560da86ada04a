"""Every option of every pass refuses a value of the wrong kind, and every choice-valued option refuses an
unknown choice, with a PassOptionError that names it (the driver turns it into exit 2 before any work)."""

import dataclasses

import pytest

from edgec.passes import REGISTRY, PassOptionError
from edgec.passes.base import build_options

FIELDS = [(name, f) for name, cls in sorted(REGISTRY.items()) if hasattr(cls, "Options")
          for f in dataclasses.fields(cls.Options)]
CHOICES = {("prune", "score"), ("prune", "scope"), ("prune", "validate"), ("lowrank", "method"), ("share", "mode"),
           ("sparse", "score"), ("sparse", "pattern"), ("quantize", "mode"), ("quantize", "reduce_range"), ("quantize", "calibrate"),
           ("recover", "match"), ("recover", "int8_reduce_range"), ("recover", "params"), ("recover", "method"),
           ("recover", "sites"), ("recover", "zo_optimizer"), ("embed", "format"), ("heads", "scope"),
           ("channels", "score"), ("channels", "scope")}


def test_every_literal_option_is_listed_as_a_choice():
    import typing

    literal = {(name, key) for name, cls in REGISTRY.items() if hasattr(cls, "Options")
               for key, hint in typing.get_type_hints(cls.Options).items()
               if typing.get_origin(hint) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(hint))}
    assert literal <= CHOICES


@pytest.mark.parametrize("name,field", [(n, f) for n, f in FIELDS if not isinstance(f.default, str)],
                         ids=lambda x: getattr(x, "name", x))
def test_a_number_or_flag_option_refuses_a_word(name, field):
    with pytest.raises(PassOptionError, match=field.name):
        build_options(REGISTRY[name].Options, {field.name: "nonsense"}, name)


@pytest.mark.parametrize("name,option", sorted(CHOICES))
def test_a_choice_option_refuses_an_unknown_choice(name, option):
    with pytest.raises(PassOptionError):
        build_options(REGISTRY[name].Options, {option: "no-such-choice"}, name)


def test_every_pass_takes_its_defaults():
    for name, cls in REGISTRY.items():
        if hasattr(cls, "Options"):
            build_options(cls.Options, {}, name)
