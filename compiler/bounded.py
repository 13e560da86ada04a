"""Which outputs of a model are probabilities by construction: made by Sigmoid or Softmax.

Such an output's error is judged against the unit interval at least (`runtime.fidelity`), not only against the
spread the feeds happen to show: a wake-word spotter's score on audio without its word spans 1e-4, and an error of
2e-4 there is 200 % of that spread and nothing a user would see.
"""

from __future__ import annotations

import onnx

UNIT_OPS = ("Sigmoid", "Softmax", "HardSigmoid")
# operators that move or select values without changing them: a probability stays one through them
CARRIERS = ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Transpose", "Slice", "Gather", "Split",
            "Expand", "Cast")


def unit_interval_outputs(model: onnx.ModelProto) -> frozenset[str]:
    """The graph outputs whose every value comes from a Sigmoid/Softmax through carriers, Concats of them, or an If
    whose branches both give one (a spotter that runs its verifier only past a threshold)."""
    return frozenset(o.name for o in model.graph.output if _unit(o.name, [_producers(model.graph)]))


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _unit(name: str, scopes: list[dict[str, onnx.NodeProto]], depth: int = 0) -> bool:
    """Whether tensor `name` is a probability; `scopes`: producers of the innermost graph first, then outer ones."""
    node = next((scope[name] for scope in scopes if name in scope), None)
    if node is None or depth > 64:
        return False
    if node.op_type in UNIT_OPS:
        return True
    if node.op_type == "Concat":
        return all(_unit(i, scopes, depth + 1) for i in node.input)
    if node.op_type == "If":
        k = list(node.output).index(name)
        branches = [a.g for a in node.attribute if a.name in ("then_branch", "else_branch")]
        return len(branches) == 2 and all(_unit(b.output[k].name, [_producers(b), *scopes], depth + 1)
                                          for b in branches)
    return node.op_type in CARRIERS and bool(node.input) and _unit(node.input[0], scopes, depth + 1)
