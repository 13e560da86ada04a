"""`edgec recover`: re-tune a compiled model's group affines against the original by forward passes only,
here or on the device it runs on (the data never leaves it), and fold them into the model's constants."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort

from edgec.compiler import modelio
from edgec.compiler.calibration.loading import vocabulary_size
from edgec.compiler.errors import InputError
from edgec.passes.cleanup import constant_nodes_to_initializers
from edgec.passes.grasp.affines import Affine, fold, group_index
from edgec.passes.grasp.sites import find_sites
from edgec.passes.grasp.tuning import tuning_model
from edgec.passes.grasp.zo_recover import slots_for, step_rule
from edgec.passes.quantize import INTEGER_OPS
from edgec.runtime.inputs import input_specs, synthesize_feed
from edgec.runtime.zo import ZOSettings

FOLD_TOLERANCE = 1e-4     # relative L2, folded vs tuning graph, in float graphs


def retune(model_path: Path, teacher_path: Path, output: Path, data: str, device: str | None, settings: ZOSettings,
           groups: int = 8, sites: str = "linear", norms: bool = False, batch: int = 8, force: bool = False) -> dict:
    modelio.ensure_writable_output(output, [model_path, teacher_path], force)
    model, teacher = modelio.load_model(model_path), modelio.load_model(teacher_path)
    outputs = [o.name for o in model.graph.output]
    missing = sorted(set(outputs) - {o.name for o in teacher.graph.output})
    if missing:
        raise InputError(f"{teacher_path}: has no output(s) {missing} of {model_path}: is it the original model?")
    graph = modelio.to_graph(model)
    constant_nodes_to_initializers(graph)        # exporters' Constant-node weights: the fold writes initializers
    graph.toposort()
    found = find_sites(graph, sites, norms)
    if not found:
        raise InputError(f"{model_path}: no layer whose output channels a group affine can fold into")
    slots = slots_for(found, groups)
    rule, epsilon = step_rule(found, settings.optimizer, settings.epsilon)
    settings = replace(settings, optimizer=rule, epsilon=epsilon)
    tuning = tuning_model(gs.export_onnx(graph, do_type_check=False), slots).SerializeToString()
    job = {"slots": slots, "outputs": outputs, "judged": outputs, "batch": batch,
           "settings": asdict(settings)}
    result = _tune(tuning, teacher_path, data, device, job, settings)
    gain = result["held_out_best"] > result["held_out_before"]
    fold_error, written = 0.0, model            # no gain: the model is written as it came
    if gain:
        for site, gamma, beta in zip(found, result["gammas"], result["betas"], strict=True):
            fold(site, Affine(np.asarray(gamma), np.asarray(beta)))
        written = modelio.to_model(graph, model)
        try:
            fold_error, tolerance = _fold_check(written, tuning, slots, result, model, teacher,
                                                _check_feed(model, data, device))
        except ort_errors() as exc:      # synthesized inputs (device data stays there) this model refuses
            raise InputError(f"the fold could not be checked here ({str(exc).splitlines()[0][:160]}): not "
                             "written; run `edgec recover` where the data is") from None
        if fold_error > tolerance:
            raise InputError(f"the folded model differs from the tuned one by {fold_error:.1e} (relative, more "
                             f"than {tolerance:.1e}): not written")
        onnx.checker.check_model(written)
    modelio.save_model_atomic(written, output)
    return {**{k: v for k, v in result.items() if k not in ("gammas", "betas")}, "device": device or "local",
            "sites": len(found), "groups_per_site": {s["label"] or s["output"]: s["groups"] for s in slots},
            "fold_rel_error": fold_error, "written": str(output), "changed": gain, "optimizer": settings.optimizer,
            "epsilon": settings.epsilon}


def _tune(tuning: bytes, teacher_path: Path, data: str, device: str | None, job: dict, settings: ZOSettings) -> dict:
    if device:
        from edgec.compiler.devices import SSHDevice, open_device

        target = open_device(device)
        if not isinstance(target, SSHDevice):
            raise InputError(f"--device {device}: tuning runs on ssh:// devices (or here, without --device)")
        return target.tune(tuning, teacher_path, data, job, timeout=settings.minutes * 60 + 600)
    from edgec.runtime.zo_job import run_job

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
        from edgec.runtime.zo_job import first_feed, load_arrays

        return first_feed(load_arrays(data), [i.name for i in _session(model.SerializeToString()).get_inputs()])
    return synthesize_feed(input_specs(_session(model.SerializeToString())), np.random.default_rng(0), None,
                           vocabulary_size(model))


def _fold_check(folded: onnx.ModelProto, tuning: bytes, slots, result: dict, model: onnx.ModelProto,
                teacher: onnx.ModelProto, feed: dict) -> tuple[float, float]:
    """(folded vs the tuning graph at the tuned values, the tolerance), on `feed`. In an int8 graph the fold
    rounds in another order and the next dynamic quantization may flip a step: the tolerance there is the int8
    model's own distance from the original on the same input."""
    extra = {}
    for slot, gamma, beta in zip(slots, result["gammas"], result["betas"], strict=True):
        index = group_index(slot["channels"], slot["groups"])
        extra[slot["gamma"]] = np.asarray(gamma, np.float32)[index].reshape(slot["shape"])
        if slot["beta"]:
            extra[slot["beta"]] = np.asarray(beta, np.float32)[index].reshape(slot["shape"])
    error = _distance(_outputs(folded.SerializeToString(), feed), _outputs(tuning, {**feed, **extra}))
    if not any(n.op_type in INTEGER_OPS for n in model.graph.node):
        return error, FOLD_TOLERANCE
    return error, max(FOLD_TOLERANCE, _distance(_outputs(model.SerializeToString(), feed),
                                              _outputs(teacher.SerializeToString(), feed)))


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
    worst = 0.0
    for x, y in zip(got, ref, strict=False):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.floating) and x.shape == y.shape and np.linalg.norm(y):
            worst = max(worst, float(np.linalg.norm(x.astype(np.float64) - y) / np.linalg.norm(y)))
    return worst
