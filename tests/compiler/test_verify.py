"""The held-out gate (compiler.verify): a model with static int8 keeps the share of the budget its search kept."""

import pytest

from edgec.compiler.report.compile_report import CompileReport, PassRecord
from edgec.compiler.verify import _static_gate
from edgec.passes.quantize import STATIC_ERROR_SHARE


def _report(recipe: str, changed: bool = True) -> CompileReport:
    report = CompileReport(input="m.onnx", output=None, target="x86", providers=["CPUExecutionProvider"],
                           pipeline=["quantize"])
    stats = {"recipe": recipe, "recipe_mode": recipe.split(" ")[0]}      # as QuantizePass._applied records them
    report.passes.append(PassRecord("quantize", changed, 1.0, 0, 0, 0, stats=stats))
    return report


def test_static_int8_is_held_out_at_the_reserved_share_of_the_gate():
    assert _static_gate(_report("static (minmax per-channel, wide)"), 0.99) == pytest.approx(
        1 - STATIC_ERROR_SHARE * 0.01)


@pytest.mark.parametrize("report", [_report("dynamic (per-channel)"), _report("static (minmax per-channel)", False)])
def test_dynamic_or_unchanged_int8_keeps_the_gate(report):
    assert _static_gate(report, 0.99) == 0.99


def test_a_gate_turned_off_stays_off():
    assert _static_gate(_report("static (minmax per-channel)"), 0.0) == 0.0
