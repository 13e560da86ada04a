"""`edgec recover`: re-tune a compiled model's group affines against the original by forward passes only,
here or on the device it runs on (the data never leaves it), and fold them into the model's constants."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort

from edgec.compiler import modelio
from edgec.compiler.bounded import unit_interval_outputs
from edgec.compiler.calibration.feeds import FeedSet
from edgec.compiler.calibration.loading import vocabulary_size
from edgec.compiler.errors import InputError
from edgec.compiler.reference import Reference
from edgec.passes.cleanup import constant_nodes_to_initializers
from edgec.passes.quantize import INTEGER_OPS
from edgec.passes.recovery.affines import Affine, fold
from edgec.passes.recovery.forward_only import step_rule
from edgec.passes.recovery.options import AffineSettings
from edgec.passes.recovery.shared import slots_for
from edgec.passes.recovery.sites import find_sites
from edgec.passes.recovery.tuning import tuning_model
from edgec.runtime.fidelity import relative_l2
from edgec.runtime.inputs import input_specs, synthesize_feed
from edgec.runtime.session import SessionConfig, create_session
from edgec.runtime.zo.job import JobResult, ZOJob, run_job
from edgec.runtime.zo.tuner import SiteSlot, ZOResult, ZOSettings, group_index

FOLD_TOLERANCE = 1e-4     # relative L2, folded vs tuning graph, in float graphs


def retune(model_path: Path, teacher_path: Path, output: Path, data: str, device: str | None, settings: ZOSettings,
           affine: AffineSettings, force: bool = False) -> dict:
    modelio.ensure_writable_output(output, [model_path, teacher_path], force)
    model, teacher = modelio.load_model(model_path), modelio.load_model(teacher_path)
    outputs = [o.name for o in model.graph.output]
    missing = sorted(set(outputs) - {o.name for o in teacher.graph.output})
    if missing:
        raise InputError(f"{teacher_path}: has no output(s) {missing} of {model_path}: is it the original model?")
    graph = modelio.to_graph(model)
    constant_nodes_to_initializers(graph)        # exporters' Constant-node weights: the fold writes initializers
    graph.toposort()
    found = find_sites(graph, affine.sites, affine.norms)
    if not found:
        raise InputError(f"{model_path}: no layer whose output channels a group affine can fold into")
    slots = slots_for(found, affine.groups)
    rule, epsilon = step_rule(found, settings.optimizer, settings.epsilon)
    settings = replace(settings, optimizer=rule, epsilon=epsilon)
    tuning = tuning_model(gs.export_onnx(graph, do_type_check=False), slots).SerializeToString()
    job = ZOJob(slots, outputs, settings, judged=outputs, batch=affine.batch,
                units=sorted(unit_interval_outputs(teacher) & set(outputs)))
    done = _tune(tuning, teacher_path, data, device, job)
    result = done.tuned
    gain = result.held_out_best > result.held_out_before
    fold_error, written = 0.0, model            # no gain: the model is written as it came
    if gain:
        for site, gamma, beta in zip(found, result.gammas, result.betas, strict=True):
            fold(site, Affine(np.asarray(gamma), np.asarray(beta)))
        written = modelio.to_model(graph, model)
        try:
            fold_error, tolerance = _fold_check(written, tuning, slots, result, model, teacher, teacher_path,
                                                _check_feed(model, data, device))
        except ort_errors() as exc:      # synthesized inputs (device data stays there) this model refuses
            raise InputError(f"the fold could not be checked here ({str(exc).splitlines()[0][:160]}): not "
                             "written; run `edgec recover` where the data is") from None
        if fold_error > tolerance:
            raise InputError(f"the folded model differs from the tuned one by {fold_error:.1e} (relative, more "
                             f"than {tolerance:.1e}): not written")
        onnx.checker.check_model(written)
    modelio.save_model_atomic(written, output)
    return {**done.stats(), "device": device or "local",
            "sites": len(found), "groups_per_site": {s.label or s.output: s.groups for s in slots},
            "fold_rel_error": fold_error, "written": str(output), "changed": gain, "optimizer": settings.optimizer,
            "epsilon": settings.epsilon}


def _tune(tuning: bytes, teacher_path: Path, data: str, device: str | None, job: ZOJob) -> JobResult:
    if device:
        from edgec.compiler.bench.devices import SSHDevice, open_device

        target = open_device(device)
        if not isinstance(target, SSHDevice):
            raise InputError(f"--device {device}: tuning runs on ssh:// devices (or here, without --device)")
        return target.tune(tuning, teacher_path, data, job, timeout=job.settings.minutes * 60 + 600)

    if not Path(data).is_file():
        raise InputError(f"{data}: data file not found")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tuning.onnx"
        path.write_bytes(tuning)
        try:
            return run_job(job, str(path), str(teacher_path), data)
        except ValueError as exc:
            raise InputError(f"{data}: {exc}") from None


def _check_feed(model: onnx.ModelProto, data: str, device: str | None) -> dict:
    """The fold check's input: the data's first sample when the data is here, else a synthesized one (the data
    stays on the device)."""
    if not device:
        from edgec.runtime.zo.job import first_feed, load_arrays

        return first_feed(load_arrays(data), [i.name for i in _session(model.SerializeToString()).get_inputs()])
    return synthesize_feed(input_specs(_session(model.SerializeToString())), np.random.default_rng(0), None,
                           vocabulary_size(model))


def _fold_check(folded: onnx.ModelProto, tuning: bytes, slots: list[SiteSlot], result: ZOResult,
                model: onnx.ModelProto, teacher: onnx.ModelProto, teacher_path: Path,
                feed: dict) -> tuple[float, float]:
    """(folded vs the tuning graph at the tuned values, the tolerance), on `feed`. In an int8 graph the fold
    rounds in another order and the next dynamic quantization may flip a step: the tolerance there is the int8
    model's own distance from the original on the same input (measured as `compile` measures: `Reference`)."""
    extra = {}
    for slot, gamma, beta in zip(slots, result.gammas, result.betas, strict=True):
        index = group_index(slot.channels, slot.groups)
        extra[slot.gamma] = np.asarray(gamma, np.float32)[index].reshape(slot.feed_shape)
        if slot.beta:
            extra[slot.beta] = np.asarray(beta, np.float32)[index].reshape(slot.feed_shape)
    error = _distance(_outputs(folded.SerializeToString(), feed), _outputs(tuning, {**feed, **extra}))
    if not any(n.op_type in INTEGER_OPS for n in model.graph.node):
        return error, FOLD_TOLERANCE
    reference = _reference(teacher, teacher_path, feed)
    return error, max(FOLD_TOLERANCE, reference.relative_change(model, reference.feeds.held_out))


def _reference(teacher: onnx.ModelProto, teacher_path: Path, feed: dict) -> Reference:
    config = SessionConfig()
    session = create_session(str(teacher_path), config)
    names = {i.name for i in session.get_inputs()}
    feeds = [{k: v for k, v in feed.items() if k in names}]
    return Reference(teacher, config, session, FeedSet("the check input", [], [], [], feeds))


def ort_errors() -> tuple[type[BaseException], ...]:
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

    return (Fail, InvalidArgument, RuntimeException)


def _session(model: bytes):
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _outputs(model: bytes, feed: dict) -> list[np.ndarray]:
    session = _session(model)
    names = [o.name for o in session.get_outputs()]
    return session.run(names, {k: v for k, v in feed.items() if k in {i.name for i in session.get_inputs()}})


def _distance(got: list[np.ndarray], ref: list[np.ndarray]) -> float:
    """Worst relative L2 over the float outputs the two share (by position)."""
    changes = [relative_l2([y], [x]) for x, y in zip(got, ref, strict=False)]
    return max([c for c in changes if c is not None], default=0.0)
