"""recover: distil the compressed model against the original on the user's unlabeled data (torch, CPU).

Place it after the compression passes and before `quantize`. The graph is viewed as a torch module
(`torch_view`), its round trip checked exact before training, trained for a time budget, and only the
initializers' values are written back — the structure is unchanged. A graph the view cannot run falls
back, with a note, to block-wise training of the MLP blocks on activations captured from the original.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassOptionError, PassResult, TeacherSource, build_options
from edgec.passes.mlp.discovery import editable_blocks

Match = Literal["layer", "norms", "mlp", "none"]
MATCHES = get_args(Match)
Params = Literal["full", "grasp"]
Method = Literal["backprop", "zo"]
Sites = Literal["linear", "mlp"]
ROUND_TRIP_TOLERANCE = 1e-5     # relative L2 between the torch view and ONNX Runtime before training


@dataclass(frozen=True)
class RecoverOptions:
    minutes: float = 5.0         # training budget (wall clock)
    steps: int = 0               # > 0: a budget of optimizer steps instead (minutes ignored): the same weights
                                 # on any machine and any executor (compile --train-steps)
    lr: float = 1e-4             # on MiniLM larger rates diverge or are noisier, smaller ones learn slower
                                 # (samples/RESULTS.md#recovery)
    intermediate: float = 3.0    # weight of the intermediate matching next to the output distillation
    batch: int = 8               # feeds stacked per step when their shapes agree (--calib-text feeds are
                                 # already batches of 16 lines of similar length)
    eval_every: int = 100
    patience: int = 15
    rewritten_lr: float = 5.0    # lr multiplier for the weights compression rewrote (a much larger one
                                 # overshoots on MiniLM: samples/RESULTS.md#recovery)
    train_rest: bool = True      # False: train only the weights compression rewrote
    warmup: float = 0.05         # fraction of the budget for a linear learning-rate warm-up
    match: Match = "layer"         # intermediate matching: layer (the residual stream after each compressed block:
                                 # its Add, or the LayerNormalization that follows) | norms (layer + every
                                 # LayerNormalization output) | mlp (block outputs) | none
    # > 0: the last fraction of the budget trains through ONNX Runtime's dynamic int8 rounding (straight-through),
    # for a model that is quantized next; 7-bit weights where reduce_range says (auto: as quantize's auto)
    int8_tail: float = 0.0
    int8_reduce_range: Literal["auto", "true", "false"] = "auto"
    # GRASP: train only one scale γ and shift β per group of `groups` channels at each site (every linear
    # layer's output, or the MLP blocks' with sites=mlp; LayerNorm outputs too with norms), folded into the
    # layers' constants afterwards. method=zo (implies params=grasp) tunes them by forward passes through
    # ONNX Runtime only: no torch, any graph ONNX Runtime runs, int8 ones included.
    params: Params = "full"
    method: Method = "backprop"
    groups: int = 8
    sites: Sites = "linear"
    norms: bool = False
    affine_lr: float = 2e-4      # Adam's step on the dimensionless γ − 1 and β / rms(site) (backprop, zo spsa);
                                 # 2e-3 walked away from the best on MiniLM (samples/RESULTS.md#forward-only-recovery)
    # zo's step rule (runtime.zo_steps, zo_jacobian); auto: gauss-newton where sites round (int8, QDQ), else
    # jacobian — each won where the other found nothing (samples/RESULTS.md#forward-only-recovery)
    zo_optimizer: Literal["auto", "gauss-newton", "spsa", "jacobian"] = "auto"
    queries: int = 8             # zo: random directions per step (two forward passes each)
    epsilon: float = 0.0         # zo: perturbation size; 0: 1e-2 where sites round (smaller reads rounding noise), else 1e-3

    def __post_init__(self):
        if self.lr <= 0 or self.rewritten_lr <= 0 or not 0 <= self.warmup < 1:
            raise PassOptionError("pass 'recover': lr and rewritten_lr must be > 0 and warmup in [0, 1)")
        if not 0 <= self.int8_tail < 1:
            raise PassOptionError(f"pass 'recover': int8_tail must lie in [0, 1), not {self.int8_tail}")
        if self.steps < 0:
            raise PassOptionError(f"pass 'recover': steps must be ≥ 0, not {self.steps}")
        if self.groups < 1 or self.queries < 1 or self.epsilon < 0 or self.affine_lr <= 0:
            raise PassOptionError("pass 'recover': groups and queries must be ≥ 1, epsilon ≥ 0 and affine_lr > 0")


class RecoverPass:
    name = "recover"
    Options = RecoverOptions
    needs = frozenset({"teacher", "fidelity"})     # fidelity: the forward-only path scores its fold
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(RecoverOptions, ctx.options, self.name)
        if opts.minutes <= 0 and opts.steps <= 0:
            return PassResult(False, {}, ["recover: a budget of 0 minutes trains nothing"])
        teacher = ctx.need_teacher("recover")
        if opts.method == "zo":
            return _recover_zo(graph, ctx, opts)
        try:
            import torch  # noqa: F401
        except ImportError:
            if opts.params == "grasp":
                return _recover_zo(graph, ctx, opts, ["torch is not installed: group affines tuned by forward passes"])
            return PassResult(False, {}, ["recovery skipped: torch is not installed"])
        from edgec.passes.training.view import TorchView, UnsupportedGraph

        ordered = graph.copy()
        ordered.toposort()      # earlier passes append nodes (e.g. a new fc2 bias); the view runs them in order
        model = gs.export_onnx(ordered, do_type_check=False)
        try:
            view = TorchView(model, trainable=[] if opts.params == "grasp" else None)   # grasp: weights frozen
            error, notes = _checked_round_trip(view, model, list(teacher.search_feeds[:2]))
        except UnsupportedGraph as exc:
            from edgec.passes.training.blocks import train_blocks

            if opts.params == "grasp":
                return _recover_zo(graph, ctx, opts, [f"whole-model training unavailable ({exc}); group affines "
                                                      "tuned by forward passes through ONNX Runtime instead"])

            return train_blocks(graph, ctx, budget(opts), f"whole-model training unavailable ({exc})")
        if opts.params == "grasp":
            from edgec.passes.training.grasp import train_affines

            return train_affines(graph, view, ctx, opts, notes)
        rewritten = teacher.changed_initializers(model)
        trainable = set(view.trainable) if opts.train_rest else rewritten & set(view.trainable)
        if not trainable:
            return PassResult(False, {}, ["recover: no float32 weight to train (float16 and integer weights "
                                          "are left as they are)"])
        return _distill(graph, view, ctx, teacher, opts, error, rewritten, notes)


def distill_settings(opts: RecoverOptions, ctx: PassContext, model, rewritten: frozenset[str], judged: list[str]):
    from edgec.passes.training.distill import DistillSettings

    batch = opts.batch if _batch_axis_free(model) else 1   # a model exported for batch 1 takes feeds one by one
    return DistillSettings(minutes=opts.minutes, steps=opts.steps, lr=opts.lr, intermediate=opts.intermediate,
                           eval_every=opts.eval_every, patience=opts.patience, batch=batch, seed=ctx.seed,
                           rewritten_lr=opts.rewritten_lr, warmup=opts.warmup, rewritten=rewritten,
                           train_rest=opts.train_rest, judged=tuple(judged), int8_tail=opts.int8_tail,
                           int8_reduce_range=opts.int8_reduce_range == "true"
                           or (opts.int8_reduce_range == "auto" and ctx.int8_saturates))


def budget(opts: RecoverOptions):
    from edgec.passes.training.loop import Budget

    return Budget(opts.steps, 0.0) if opts.steps > 0 else Budget(0, opts.minutes * 60)


def _units(opts: RecoverOptions) -> int:
    """A progress bar's total: steps, or seconds."""
    return opts.steps if opts.steps > 0 else int(opts.minutes * 60)


def _affine_settings(opts: RecoverOptions):
    from edgec.passes.grasp.zo_recover import AffineSettings

    return AffineSettings(groups=opts.groups, sites=opts.sites, norms=opts.norms, batch=opts.batch)


def _recover_zo(graph: gs.Graph, ctx: PassContext, opts: RecoverOptions, notes: list[str] | None = None) -> PassResult:
    from edgec.passes.grasp.zo_recover import recover_zo

    zo = {"minutes": 0.0 if opts.steps > 0 else opts.minutes, "max_steps": opts.steps or None,
          "optimizer": opts.zo_optimizer, "queries": opts.queries, "epsilon": opts.epsilon,
          "lr": opts.affine_lr, "eval_every": max(1, opts.eval_every // 2), "patience": opts.patience, "seed": ctx.seed}
    result = recover_zo(graph, ctx, _affine_settings(opts), zo)
    result.notes[:0] = notes or []
    return result


def _distill(graph: gs.Graph, view, ctx: PassContext, teacher: TeacherSource, opts: RecoverOptions, error: float,
             rewritten: frozenset[str], notes: list[str]) -> PassResult:
    from edgec.passes.ort_tools import replace_contents
    from edgec.passes.training.distill import distill

    outputs = [t.name for t in graph.outputs]
    # every output teaches (token states too: measured richer than the sentence embedding alone), but the
    # best weights are chosen on what the user's gate judges
    judged = [n for n in outputs if teacher.judged is None or n in teacher.judged] or outputs
    intermediates = _intermediates(graph, opts.match, outputs, teacher)
    settings = distill_settings(opts, ctx, view.model, rewritten, judged)
    with ctx.progress(f"recover: distilling for {budget(opts).describe()}", _units(opts)) as advance:
        result = distill(view, teacher, outputs, intermediates, settings, advance)
    trained = gs.import_onnx(view.write_back())
    replace_contents(graph, trained)
    stats = {**asdict(result), "trainable_tensors": len(view.trainable),
             "rewritten_tensors": len(rewritten & set(view.trainable)), "matched_intermediates": len(intermediates),
             "round_trip_rel_error": float(f"{error:.2e}")}
    note = (f"distilled {result.steps} steps in {result.seconds:.0f} s: held-out cosine "
            f"{result.held_out_before:.4f} → {result.held_out_best:.4f}"
            + (" (stopped early)" if result.stopped_early else ""))
    start = result.held_out_before
    if result.int8_from_step is not None and result.held_out_int8_start is not None:
        start = result.held_out_int8_start
        note = (f"distilled {result.steps} steps in {result.seconds:.0f} s, through int8 rounding from step "
                f"{result.int8_from_step}: held-out cosine {result.held_out_before:.4f} (float) → "
                f"{result.held_out_int8_start:.4f} (int8, then) → {result.held_out_best:.4f} (int8)")
    return PassResult(result.held_out_best > start, stats, notes + [note])


def _intermediates(graph: gs.Graph, match: str, outputs: list[str], teacher) -> list[str]:
    """Tensors both graphs compute that the student is taught to match (see RecoverOptions.match)."""
    if match == "none":
        return []
    tensors = [_matched_tensor(b.fc2.y, "mlp" if match == "mlp" else "layer") for b in editable_blocks(graph)]
    if match == "norms":
        tensors += [n.outputs[0] for n in graph.nodes if n.op == "LayerNormalization"]
    names = list(dict.fromkeys(t.name for t in tensors))
    return [n for n in names if n not in outputs and teacher.has_tensor(n)]


def _matched_tensor(mlp_output: gs.Variable, where: str) -> gs.Variable:
    """The MLP block's output, or (where=layer) the residual stream it is added into."""
    tensor = mlp_output
    if where == "layer":
        for op in ("Add", "LayerNormalization"):
            users = tensor.outputs
            if len(users) != 1 or users[0].op != op:
                break
            tensor = users[0].outputs[0]
    return tensor


def _batch_axis_free(model) -> bool:
    """Feeds can be stacked along axis 0 only if no input fixes its first dimension."""
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name not in initializers and (not dims or dims[0].HasField("dim_value")):
            return False
    return True


def _checked_round_trip(view, model, feeds) -> tuple[float, list[str]]:
    """The round trip's error, or UnsupportedGraph. A failed check is measured once more: on MiniLM a first
    check now and then reads far above every rerun on the same model (samples/RESULTS.md#recovery), and a
    one-off must not cost the whole-model training (the compile's verification judges the result)."""
    from edgec.passes.training.view import UnsupportedGraph

    error, output = view_error(view, model, feeds)
    if error <= ROUND_TRIP_TOLERANCE:
        return error, []
    again, output_again = view_error(view, model, feeds)
    if again > ROUND_TRIP_TOLERANCE:
        raise UnsupportedGraph(f"the torch view differs from ONNX Runtime by {again:.1e} (relative, on "
                               f"'{output_again}'; {error:.1e} when first measured)")
    return again, [f"the torch view's round trip first measured {error:.1e} (relative, on '{output}'), "
                   f"then {again:.1e}: trained the whole model"]


def view_error(view, model, feeds) -> tuple[float, str]:
    """Worst relative L2 between the torch view and ONNX Runtime over the float outputs, and that output."""
    import onnxruntime as ort
    import torch

    from edgec.passes.training.view import UnsupportedGraph, to_torch_feed

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    worst, where = 0.0, ""
    with torch.no_grad():
        for feed in feeds:
            try:
                got = view(to_torch_feed(feed))
            except Exception as exc:  # noqa: BLE001 - an op variant the view declines or gets wrong: fall back
                raise UnsupportedGraph(f"the torch view cannot run this graph ({type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from exc
            for name, ref in zip(names, sess.run(names, feed), strict=True):
                ref = np.asarray(ref, np.float64)
                if not np.issubdtype(ref.dtype, np.floating) or not np.linalg.norm(ref):
                    continue
                diff = float(np.linalg.norm(got[name].double().numpy() - ref) / np.linalg.norm(ref))
                if diff > worst:
                    worst, where = diff, name
    return worst, where
