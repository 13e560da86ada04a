"""cleanup: Constant nodes to initializers, Identity removal, safe constant folding, dead nodes, toposort; and
hard-swish written out in elementwise ops as the one op ONNX Runtime runs fast (`int8.hardswish`: a PP-OCR text
direction classifier, 18 of them as x · Clip(x + 3, 0, 6) / 6, ran 1.6× faster float), a batch normalization
written out after a Conv folded into it (`conv.affine`), GELUs written out as ONNX Runtime's one op (`exact.gelu`)
and one-hot MatMuls as the lookups they are (`exact.onehot`): rewrites ONNX Runtime does not do.

Folding never grows the model: a node whose inputs are all constants is folded only if its result
is no larger than its inputs, so a factorized `MatMul(U, V)` is never multiplied back into W.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx.reference import ReferenceEvaluator

from edgec.passes.base import PassContext, PassResult, build_options
from edgec.passes.conv.affine import affine_folded
from edgec.passes.exact.gelu import gelu_fused
from edgec.passes.exact.onehot import onehot_gathered
from edgec.passes.graph_tools import is_graph_output
from edgec.passes.int8.hardswish import hardswish_fused
from edgec.passes.ort_tools import replace_contents

_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
               "Bernoulli", "If", "Loop", "Scan", "Constant"}


# the stat that counts cleanup's rewrites ONNX Runtime does not do at load: a compile whose only change they are is
# still worth writing (compiler.driver), and the sweep counts it as a rewrite
BEYOND_RUNTIME = "beyond_runtime"

# where the one op runs at least as the ops it replaces do: a mobile EP (NNAPI, CoreML) may take Add/Clip/Mul/Div
# and not HardSwish or ONNX Runtime's contrib FastGelu, which would split its partition
ONE_OP_PROVIDERS = {"CPUExecutionProvider", "XnnpackExecutionProvider", "CUDAExecutionProvider"}


@dataclass(frozen=True)
class CleanupOptions:
    fold_constants: bool = True
    max_fold_bytes: int = 64 * 1024 * 1024
    fuse: bool = True              # the fusions ONNX Runtime does not do: a Conv's affine chain, hard-swish, GELU,
    fuse_hardswish: bool = True    # one-hot MatMuls (those into contrib or newer ops only where the EPs run them)


class CleanupPass:
    name = "cleanup"
    needs: frozenset[str] = frozenset()
    lossless = True        # runs on synthesized inputs too: it cannot change what the model computes
    Options = CleanupOptions

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(CleanupOptions, ctx.options, self.name)
        nodes_before = len(graph.nodes)
        outer = _names_used_in_subgraphs(graph)
        constants = _constant_nodes_to_initializers(graph, outer)
        identities = _remove_identities(graph, outer)
        folded = _fold_constants(graph, opts.max_fold_bytes, outer) if opts.fold_constants else 0
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
        fused = _fused(graph, opts.fuse_hardswish and set(ctx.providers) <= ONE_OP_PROVIDERS) \
            if opts.fuse else dict.fromkeys(FUSIONS, 0)
        affine, hardswish = fused["affine_folded"], fused["hardswish_fused"]
        removed = nodes_before - len(graph.nodes)
        stats = {"constant_nodes": constants, "identities_removed": identities, "folded": folded,
                 "nodes_removed": removed, **fused, BEYOND_RUNTIME: sum(fused.values())}
        notes = [f"{hardswish} hard-swish activations written out as x · Clip(x + 3, 0, 6) / 6 run as one op each: "
                 "ONNX Runtime does not fuse them itself"] if hardswish else []
        notes += [f"{affine} Convs took the per-channel Add/Sub/Mul/Div that followed them (a batch normalization "
                  "written out) into their weights and bias: ONNX Runtime folds only part of such chains"] if affine else []
        notes += [f"{fused['gelu_fused']} GELUs written out in elementwise ops run as one op each (ONNX Runtime's "
                  "FastGelu/Gelu)"] if fused["gelu_fused"] else []
        notes += [f"{fused['onehot_gathered']} MatMuls of a one-hot matrix by a table run as the row lookups they are "
                  "(Gather)"] if fused["onehot_gathered"] else []
        return PassResult(changed=removed > 0 or constants > 0 or any(fused.values()), stats=stats, notes=notes)


FUSIONS = ("hardswish_fused", "affine_folded", "gelu_fused", "onehot_gathered")


def _fused(graph: gs.Graph, contrib: bool) -> dict[str, int]:
    """How many of each fusion ONNX Runtime does not do were made (`FUSIONS`): Convs that took their trailing
    per-channel affine ops (`conv.affine`), written-out hard-swishes and GELUs as one op (`int8.hardswish`,
    `exact.gelu`: where `contrib`, the EPs run those ops), one-hot MatMuls as Gathers (`exact.onehot`); the graph is
    re-imported where anything changed."""
    ops = {n.op for n in graph.nodes}
    # hard-swish first: its "/ 6" is an affine op the folds would otherwise take into the next Conv
    steps = {"hardswish_fused": (lambda m: hardswish_fused(m, clipped_only=True), contrib and {"Mul", "Clip"} <= ops),
             "affine_folded": (lambda m: affine_folded(m, beyond_runtime=True), "Conv" in ops and bool(ops & {"Mul", "Add", "Sub", "Div"})),
             "gelu_fused": (gelu_fused, contrib and bool(ops & {"Tanh", "Erf"}) and "Mul" in ops),
             "onehot_gathered": (onehot_gathered, {"MatMul", "Equal"} <= ops)}
    counts = dict.fromkeys(FUSIONS, 0)
    if not any(possible for _, possible in steps.values()):
        return counts
    model = gs.export_onnx(graph, do_type_check=False)
    for name, (fuse, possible) in steps.items():
        if possible:
            model, counts[name] = fuse(model)
    if any(counts.values()):
        replace_contents(graph, gs.import_onnx(model))
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return counts


def _names_used_in_subgraphs(graph: gs.Graph) -> set[str]:
    names: set[str] = set()
    for sub in graph.subgraphs(recursive=True):
        for node in sub.nodes:
            names.update(t.name for t in node.inputs)
    return names


def constant_nodes_to_initializers(graph: gs.Graph) -> int:
    """Turn Constant nodes into initializers (not those a subgraph reads or the graph outputs); how many."""
    count = _constant_nodes_to_initializers(graph, _names_used_in_subgraphs(graph))
    graph.cleanup()
    return count


def _constant_nodes_to_initializers(graph: gs.Graph, keep: set[str]) -> int:
    count = 0
    for node in graph.nodes:
        if node.op != "Constant" or len(node.outputs) != 1:
            continue
        out = node.outputs[0]
        value = node.attrs.get("value")
        if not isinstance(value, gs.Constant) or is_graph_output(graph, out) or out.name in keep:
            continue
        values = np.asarray(value.values)
        node.outputs.clear()
        out.to_constant(values)
        count += 1
    return count


def _remove_identities(graph: gs.Graph, keep: set[str]) -> int:
    count = 0
    for node in graph.nodes:
        if node.op != "Identity" or not node.inputs or not node.outputs:
            continue
        src, out = node.inputs[0], node.outputs[0]
        if is_graph_output(graph, out) or out.name in keep:
            continue
        for user in list(out.outputs):
            for i, t in enumerate(user.inputs):
                if t is out:
                    user.inputs[i] = src
        node.outputs.clear()
        count += 1
    return count


def _fold_constants(graph: gs.Graph, max_bytes: int, keep: set[str]) -> int:
    graph.toposort()
    folded = 0
    for node in list(graph.nodes):
        if not _foldable(graph, node, keep):
            continue
        in_bytes = sum(np.asarray(t.values).nbytes for t in node.inputs if t.name)
        results = _evaluate(graph, node)
        if results is None:
            continue
        out_bytes = sum(r.nbytes for r in results)
        if out_bytes > max(in_bytes, 64) or out_bytes > max_bytes:
            continue
        outs = list(node.outputs)
        node.outputs.clear()
        for out, value in zip(outs, results, strict=True):
            out.to_constant(np.asarray(value))
        folded += 1
    return folded


def _foldable(graph: gs.Graph, node: gs.Node, keep: set[str]) -> bool:
    if node.op in _NEVER_FOLD or (node.domain or "") not in ("", "ai.onnx") or not node.outputs:
        return False
    if any(isinstance(v, gs.Graph) for v in node.attrs.values()):
        return False
    ins = [t for t in node.inputs if t.name]
    if not ins or not all(isinstance(t, gs.Constant) for t in ins):
        return False
    return not any(is_graph_output(graph, o) or o.name in keep for o in node.outputs)


def _evaluate(graph: gs.Graph, node: gs.Node) -> list[np.ndarray] | None:
    """Run one node on its constant inputs with ONNX's reference evaluator."""
    try:
        sub = gs.Graph(nodes=[node], inputs=[], outputs=list(node.outputs), opset=graph.opset)
        model = gs.export_onnx(sub, do_type_check=False)
        del model.opset_import[:]
        model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in _opsets(graph).items())
        # log(0) = -inf and the like are what the runtime computes too (T5's position buckets): no warnings
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [np.asarray(r) for r in ReferenceEvaluator(model).run(None, {})]
    except Exception:  # noqa: BLE001 - an op the evaluator cannot run is simply not folded
        return None


def _opsets(graph: gs.Graph) -> dict[str, int]:
    opsets = {"": graph.opset}
    for imp in graph.import_domains or []:
        if imp.domain not in ("", "ai.onnx"):
            opsets[imp.domain] = imp.version
    return opsets
