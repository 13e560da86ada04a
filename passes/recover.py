"""recover: distil the compressed model against the original on the user's unlabeled data (torch, CPU).

Place it after the compression passes and before `quantize`. The graph is viewed as a torch module
(`torch_view`), its round trip checked exact before training, trained for a time budget, and only the
initializers' values are written back — the structure is unchanged. A graph the view cannot run falls
back, with a note, to block-wise training of the MLP blocks on activations captured from the original.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassResult, build_options
from edgec.passes.mlp import editable_blocks

ROUND_TRIP_TOLERANCE = 1e-5     # relative L2 between the torch view and ONNX Runtime before training


@dataclass(frozen=True)
class RecoverOptions:
    minutes: float = 5.0         # training budget (wall clock)
    lr: float = 1e-4             # MiniLM: 1e-3 diverges, 1e-4 improves steadily (3e-4 is noisier)
    intermediate: float = 1.0    # weight of the MLP-block-output matching next to the output distillation
    batch: int = 8
    eval_every: int = 100
    patience: int = 15


class RecoverPass:
    name = "recover"
    Options = RecoverOptions

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(RecoverOptions, ctx.options, self.name)
        if opts.minutes <= 0:
            return PassResult(False, {}, ["recover: a budget of 0 minutes trains nothing"])
        if ctx.teacher is None:
            raise ValueError("recover needs the original model and training data (run it inside `edgec compile`)")
        try:
            import torch  # noqa: F401
        except ImportError:
            return PassResult(False, {}, ["recovery skipped: torch is not installed"])
        from edgec.passes.torch_view import TorchView, UnsupportedGraph

        model = gs.export_onnx(graph.copy(), do_type_check=False)
        try:
            view = TorchView(model)
            error = _round_trip_error(view, model, ctx.teacher.held_out[:2], ctx)
            if error > ROUND_TRIP_TOLERANCE:
                raise UnsupportedGraph(f"the torch view differs from ONNX Runtime by {error:.1e} (relative)")
        except UnsupportedGraph as exc:
            from edgec.passes.recover_blocks import train_blocks

            return train_blocks(graph, ctx, opts.minutes, f"whole-model training unavailable ({exc})")
        return _distill(graph, view, ctx, opts, error)


def _distill(graph: gs.Graph, view, ctx: PassContext, opts: RecoverOptions, error: float) -> PassResult:
    from edgec.passes.distill import DistillSettings, distill
    from edgec.passes.ort_tools import replace_contents

    outputs = [t.name for t in graph.outputs]
    intermediates = [b.fc2.y.name for b in editable_blocks(graph)
                     if b.fc2.y.name not in outputs and ctx.teacher.has_tensor(b.fc2.y.name)]
    settings = DistillSettings(opts.minutes, opts.lr, opts.intermediate, opts.eval_every, opts.patience, opts.batch,
                               ctx.seed)
    with ctx.progress(f"recover: distilling for {opts.minutes:g} min", int(opts.minutes * 60)) as advance:
        result = distill(view, ctx.teacher, outputs, intermediates, settings, advance)
    trained = gs.import_onnx(view.write_back())
    replace_contents(graph, trained)
    stats = {**asdict(result), "trainable_tensors": len(view.trainable), "matched_intermediates": len(intermediates),
             "round_trip_rel_error": float(f"{error:.2e}")}
    note = (f"distilled {result.steps} steps in {result.seconds:.0f} s: held-out cosine "
            f"{result.held_out_before:.4f} → {result.held_out_best:.4f}"
            + (" (stopped early)" if result.stopped_early else ""))
    return PassResult(result.held_out_best > result.held_out_before, stats, [note])


def _round_trip_error(view, model, feeds, ctx: PassContext) -> float:
    """Worst relative L2 between the torch view and ONNX Runtime over the float outputs."""
    import onnxruntime as ort
    import torch

    from edgec.passes.torch_view import to_torch_feed

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    worst = 0.0
    with torch.no_grad():
        for feed in feeds:
            got = view(to_torch_feed(feed))
            for name, ref in zip(names, sess.run(names, feed), strict=True):
                ref = np.asarray(ref, np.float64)
                if not np.issubdtype(ref.dtype, np.floating) or not np.linalg.norm(ref):
                    continue
                diff = np.linalg.norm(got[name].double().numpy() - ref) / np.linalg.norm(ref)
                worst = max(worst, float(diff))
    return worst
