"""Which pipelines a compile tries, and in which order it steps back."""

from edgec.compiler.attempts import plan_attempts, synthetic_note, without_lossy
from edgec.targets import load_target


def test_the_default_arm_pipeline_steps_back_to_the_original():
    steps = plan_attempts(["cleanup", "prune", "quantize"], {}, load_target("arm"), step_back=True)
    assert [s.label for s in steps] == ["as planned", "int8 weights rounded to nearest", "tighter floors",
                                        "the float graph", "lossless passes only", "the original model"]
    nearest = steps[1].pass_options["quantize"]
    assert nearest["round_weights"] is False and nearest["floor"] == load_target("arm").options_for("quantize")["floor"]
    tighter = steps[2].pass_options
    assert tighter["prune"]["floor"] == 0.999 and tighter["quantize"]["floor"] == 0.9955
    assert steps[3].passes == ["cleanup", "prune"] and steps[4].passes == ["cleanup"] and steps[5].passes == []


def test_int8_weights_are_kept_when_only_activation_int8_is_rejected():
    steps = plan_attempts(["cleanup", "prune", "quantize", "weights"], {}, load_target("x86"), step_back=True)
    labels = [s.label for s in steps]
    assert labels.index("int8 weights only") == labels.index("tighter floors") + 1
    assert steps[labels.index("int8 weights only")].passes == ["cleanup", "prune", "weights"]
    assert steps[labels.index("the float graph")].passes == ["cleanup", "prune"]


def test_what_the_user_asked_for_is_tried_once():
    steps = plan_attempts(["cleanup", "prune"], {"prune": {"keep": 0.5}}, load_target("x86"), step_back=False)
    assert len(steps) == 1 and steps[0].pass_options == {"prune": {"keep": 0.5}}


def test_recovery_is_not_repeated_when_stepping_back():
    steps = plan_attempts(["cleanup", "prune", "recover"], {"recover": {"minutes": 1}}, load_target("x86"), True)
    assert "recover" in steps[0].passes and all("recover" not in s.passes for s in steps[1:])


def test_without_real_inputs_only_lossless_passes_remain_and_the_note_names_the_flags():
    assert without_lossy(["cleanup", "prune", "fuse", "quantize"]) == ["cleanup", "fuse"]
    note = synthetic_note(["cleanup", "prune"])
    assert "prune" in note and "--calib" in note and "--allow-synthetic" in note
    assert synthetic_note(["cleanup"]) is None


def test_without_real_inputs_the_weights_rounding_still_runs():
    from edgec.compiler.attempts import without_data

    assert without_data(["cleanup", "prune", "quantize", "embed", "weights"]) == ["cleanup", "weights"]
    note = synthetic_note(["cleanup", "quantize", "weights"])
    assert "only lossless passes and weights" in note and "quantize left out" in note
    assert synthetic_note(["cleanup", "weights"]) is None


def test_recovery_rounds_like_the_quantize_pass_that_follows():
    from types import SimpleNamespace

    from edgec.compiler.attempts import with_recovery
    from edgec.targets import load_target

    options = SimpleNamespace(recover_minutes=2.0, pass_options={})
    names = with_recovery(["cleanup", "prune", "quantize"], options, load_target("x86"))   # x86: 7-bit weights
    assert names == ["cleanup", "prune", "recover", "quantize"]
    assert options.pass_options["recover"] == {"minutes": 2.0, "int8_reduce_range": "true"}
    options = SimpleNamespace(recover_minutes=2.0, pass_options={})
    with_recovery(["cleanup", "prune", "quantize"], options, load_target("arm"))             # arm: auto
    assert options.pass_options["recover"] == {"minutes": 2.0}


def test_channel_pruning_is_recovered_like_the_other_compressions_and_cleanup_alone_is_not():
    from types import SimpleNamespace

    from edgec.compiler.attempts import with_recovery

    options = SimpleNamespace(recover_minutes=2.0, pass_options={})
    assert with_recovery(["cleanup", "channels", "quantize"], options) == ["cleanup", "channels", "recover",
                                                                           "quantize"]
    assert with_recovery(["cleanup", "quantize"], SimpleNamespace(recover_minutes=2.0, pass_options={})) == \
        ["cleanup", "quantize"]


def test_a_recover_listed_in_passes_takes_the_budget_flags_unless_its_own_options_set_one():
    from types import SimpleNamespace

    from edgec.compiler.attempts import with_recovery

    options = SimpleNamespace(recover_minutes=0.0, recover_steps=15, pass_options={})
    assert with_recovery(["cleanup", "prune", "recover"], options) == ["cleanup", "prune", "recover"]
    assert options.pass_options["recover"] == {"steps": 15}            # --train-steps was silently ignored before
    options = SimpleNamespace(recover_minutes=0.5, recover_steps=0, pass_options={"recover": {"steps": 3}})
    with_recovery(["cleanup", "prune", "recover"], options)
    assert options.pass_options["recover"] == {"steps": 3}             # an explicit recover.steps wins


def test_a_stricter_gate_raises_the_floors_below_it():
    from edgec.compiler.attempts import floors_for_gate
    from edgec.targets import load_target

    x86 = load_target("x86")
    notes: list[str] = []
    assert floors_for_gate(x86, None, notes) is x86 and floors_for_gate(x86, 0.98, notes) is x86 and not notes
    strict = floors_for_gate(x86, 0.995, notes)
    assert strict.options_for("quantize")["floor"] == 0.9955 and strict.options_for("quantize")["reduce_range"] == "true"
    assert strict.options_for("prune")["floor"] == 0.9975 and x86.options_for("quantize")["floor"] == 0.991
    assert "quantize 0.9955" in notes[0]
    barely = floors_for_gate(x86, 0.9901, [])             # no jump just above the target's own gate
    assert 0.991 < barely.options_for("quantize")["floor"] < 0.9911
    notes = []
    floors_for_gate(x86, 0.995, notes, explicit={"prune": {}, "quantize": {}})
    assert "prune" not in notes[0] and "quantize" not in notes[0]    # given options replace the target's
