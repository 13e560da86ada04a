"""Mixed precision's search (passes/int8/mixed.py) on a made-up model: each layer's int8 costs a known score."""

import onnx

from edgec.passes.int8.mixed import fewest_float_layers

LAYERS = [f"L{i}" for i in range(10)]
COST = {"L0": 0.002, "L3": 0.03, "L7": 0.02}          # the score each layer's int8 costs; others 0.0005


def _build(float_layers):
    model = onnx.ModelProto()
    model.doc_string = ",".join(sorted(float_layers))
    return model


def _score(model):
    floated = set(filter(None, model.doc_string.split(",")))
    return 1.0 - sum(COST.get(x, 0.0005) for x in LAYERS if x not in floated)


def test_the_all_int8_model_when_it_meets_the_floor():
    result = fewest_float_layers(LAYERS, _build, _score, floor=0.9)
    assert result is not None and result.float_layers == [] and result.scored == 1


def test_the_most_damaging_layers_go_float_and_no_more():
    result = fewest_float_layers(LAYERS, _build, _score, floor=0.99)
    assert result is not None and sorted(result.float_layers) == ["L3", "L7"]
    assert result.score >= 0.99 and result.scored <= 1 + len(LAYERS) + 4 + 2      # + each float layer tried again


def test_none_when_half_the_layers_float_cannot_meet_the_floor():
    built = []
    def build(float_layers):
        built.append(list(float_layers))
        return _build(float_layers)
    assert fewest_float_layers(LAYERS, build, _score, floor=0.9999) is None
    assert len(built) == 1 + len(LAYERS) + 1         # all int8, each alone, then the most float allowed: no bisection
    assert fewest_float_layers(LAYERS, _build, _score, floor=0.99, max_float_share=0.0) is None


def test_layers_are_grouped_into_runs_when_there_are_many():
    layers = [f"L{i}" for i in range(40)]
    built = []

    def build(float_layers):
        built.append(list(float_layers))
        return _build(float_layers)

    result = fewest_float_layers(layers, build, lambda m: 0.95 if "L3" not in m.doc_string.split(",") else 0.995,
                                 floor=0.99, groups=8)
    assert result is not None and result.float_layers == ["L3"]     # its run of 5 went float, then 4 came back
    assert len(built) <= 1 + 8 + 3 + 5


def test_the_re_try_returns_the_costliest_float_layers_to_int8_first():
    layers = [f"L{i}" for i in range(40)]

    def score(model):
        floated = set(model.doc_string.split(","))
        if "L3" not in floated:
            return 0.95
        return 0.995 - 0.004 * len({"L1", "L2"} - floated)      # either of L1, L2 int8 is fine, not both

    by_order = fewest_float_layers(layers, _build, score, floor=0.99, groups=8)
    by_cost = fewest_float_layers(layers, _build, score, floor=0.99, groups=8,
                                  cost=lambda layer: 10.0 if layer == "L1" else 1.0)
    assert by_order is not None and by_order.float_layers == ["L1", "L3"]    # L2 (later in the run) came back first
    assert by_cost is not None and by_cost.float_layers == ["L2", "L3"]      # the costlier L1 came back first
