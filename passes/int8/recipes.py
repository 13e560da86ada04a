"""One int8 recipe as a builder of quantized models, any chosen layers left float.

Dynamic int8 (weights int8, activations quantized at run time: MatMulInteger) needs no data; static int8
(QDQ: activation ranges calibrated on the calibration feeds, fused by ONNX Runtime into QLinearConv /
QLinearMatMul) needs feeds, and its ranges are computed once per recipe (ONNX Runtime's calibration cache),
so trying many sets of float layers costs one calibration. The tools only write to a path: each model takes
a round trip through the builder's private temporary folder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from edgec.passes.base import Feed
from edgec.passes.int8.bias import bias_corrected, dynamic_bias_corrected, input_means
from edgec.passes.int8.clamps import clamps_dropped
from edgec.passes.int8.hessians import Layer, Moments, input_hessians, weighted_layers
from edgec.passes.int8.outliers import split_outliers
from edgec.passes.int8.prepare import prepared
from edgec.passes.int8.rounding import rounded
from edgec.passes.int8.smooth import smoothed
from edgec.passes.ort_tools import calibration_in_priority_order, quiet_root_logger

WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "Attention")
CALIBRATION_FEEDS = 32        # at most this many feeds calibrate the ranges (evenly spaced over those given)


@dataclass(frozen=True)
class Recipe:
    mode: str                  # dynamic | static
    ops: tuple[str, ...]       # operator types to quantize
    per_channel: bool = True
    reduce_range: bool = False
    calibrate: str = "minmax"  # static only: minmax | percentile | entropy
    scope: str = ""            # static: "layers" (Conv/MatMul/Gemm) or "wide" (their neighbours too)
    smooth: str = ""           # dynamic: activation smoothing first (`passes.int8.smooth`; needs feeds): "all" inputs
                               # it helps, or only the "free" ones (folded into their LayerNorm)
    outliers: bool = False     # dynamic: outlier input channels computed apart in float (`passes.int8.outliers`)
    correct_bias: bool = False  # int8 weights' mean output shift taken out of the biases (`passes.int8.bias`)
    round_weights: bool = False  # int8 weights rounded by GPTQ on the calibration inputs (`passes.int8.rounding`)

    @property
    def variant(self) -> str:
        scales = "per-channel" if self.per_channel else "per-tensor"
        corrected = (", GPTQ-rounded" if self.round_weights else "") + (", bias-corrected" if self.correct_bias else "")
        if self.mode == "dynamic":
            smoothed = {"all": ", smoothed", "free": ", smoothed in LayerNorms"}.get(self.smooth, "")
            return scales + smoothed + (", outliers apart" if self.outliers else "") + corrected
        return f"{self.calibrate} {scales}{corrected}"

    @property
    def label(self) -> str:
        scope = f", {self.scope}" if self.scope else ""
        return f"{self.mode} ({self.variant}{scope})"


def with_weight_fix(recipe: Recipe, fix: str) -> Recipe:
    """The recipe with one of the fixes applied to its int8 weights: "round" (GPTQ) or "bias" (bias correction)."""
    return replace(recipe, round_weights=True) if fix == "round" else replace(recipe, correct_bias=True)


# one feed per collection step keeps the calibration's memory to one feed's activations
STATIC_OPTIONS = {"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True, "CalibStridedMinMax": 1}
NO_BIAS_CHECK = "QDQDisableWeightAdjustForInt32Bias"


class Int8Builder:
    """Quantized versions of `model` by `recipe`; `layers` are the nodes it can quantize, in graph order."""

    model: onnx.ModelProto        # what the recipe quantizes: prepared (static), smoothed and/or split (dynamic)

    def __init__(self, model: onnx.ModelProto, recipe: Recipe, feeds: Sequence[Feed] = (),
                 smoothed_by: Int8Builder | None = None, prepared_by: Int8Builder | None = None,
                 moments_on: Sequence[Feed] | None = None):
        """`smoothed_by`: a builder of the same smoothing whose smoothed model is taken as it is (no second
        smoothing of the same model and feeds); `prepared_by`: a static builder whose pre-processed model is;
        `moments_on`: the feeds GPTQ's H comes from (default: `feeds`) — not those a variant is scored on, which it
        would fit."""
        self.recipe, self.notes = recipe, list[str]()
        self._calibrated_ops = recipe.ops     # static: the operator types whose tensors its ranges cover
        self._static_options = dict(STATIC_OPTIONS)
        self.per_channel_ok = True            # False: the graph's opset cannot take per-channel scales
        self._tmp = tempfile.TemporaryDirectory(prefix="edgec-int8-")
        self._cache = Path(self._tmp.name) / "ranges.json"
        self._feeds = _spread(list(feeds), CALIBRATION_FEEDS)
        self._moment_feeds = self._feeds if moments_on is None else _spread(list(moments_on), CALIBRATION_FEEDS)
        if recipe.mode == "static":
            if not self._feeds:
                raise ValueError("static int8 needs calibration inputs")
            if prepared_by is not None:
                model, self.per_channel_ok = prepared_by.model, prepared_by.per_channel_ok
            else:
                model, self.notes, self.per_channel_ok = prepared(model, recipe.per_channel)
            if not self.per_channel_ok:
                self.recipe = recipe = replace(recipe, per_channel=False)
        self._all_int8: tuple[Recipe, onnx.ModelProto] | None = None     # the current recipe's, built once
        self._rounded: dict = {}              # GPTQ's integers per layer and grid (`int8.rounding`)
        self._moments_from = self             # whose calibration inputs GPTQ's H comes from
        self.smoothed_inputs = 0
        self.float_only: list[str] = []       # nodes that stay float whatever the recipe (outliers' MatMuls)
        if recipe.mode == "dynamic" and recipe.smooth and smoothed_by is not None:
            assert smoothed_by.recipe.smooth == recipe.smooth and not smoothed_by.recipe.outliers
            model, self.smoothed_inputs = smoothed_by.model, smoothed_by.smoothed_inputs
            self.notes = list(smoothed_by.notes)
        elif recipe.mode == "dynamic" and recipe.smooth:
            model, self.smoothed_inputs, notes = smoothed(model, self._feeds, 7 if recipe.reduce_range else 8,
                                                          recipe.per_channel, free_only=recipe.smooth == "free")
            self.notes += notes
        if recipe.mode == "dynamic" and recipe.outliers:
            model, self.float_only, notes = split_outliers(model, self._feeds, 7 if recipe.reduce_range else 8,
                                                           recipe.per_channel)
            self.notes += notes
        self.model = model
        # the tools take a path: a ModelProto handed to quantize_static is saved with external data *in place*
        self._source = Path(self._tmp.name) / "source.onnx"
        onnx.save(model, str(self._source))

    @property
    def layers(self) -> list[str]:
        """The weighted layers (Conv, MatMul, Gemm, …) the recipe quantizes: what mixed precision keeps float. The
        recipe's other operators (Add, pooling, Concat in a wide static recipe) follow their neighbours."""
        constants, apart = {t.name for t in self.model.graph.initializer}, set(self.float_only)
        return [n.name for n in self.model.graph.node if n.op_type in self.recipe.ops and n.op_type in WEIGHTED_OPS
                and _weighted(n, constants) and n.name not in apart]

    @property
    def units(self) -> list[str]:
        """What mixed precision may keep float (node names, in graph order): the weighted layers, and in a wide static
        recipe every node of its operator types — a quantized Add, pooling or Concat between int8 layers can cost more
        fidelity than any layer (open-nsfw: wide int8 missed the floor with half its layers float)."""
        if self.recipe.scope != "wide":
            return self.layers
        apart = set(self.float_only)
        return [n.name for n in self.model.graph.node if n.op_type in self.recipe.ops and n.name not in apart]

    @functools.cached_property
    def digest(self) -> str:
        """What the model to quantize computes, hashed piece by piece (past 2 GB it cannot be serialized whole)."""
        digest = hashlib.sha256()
        for tensor in self.model.graph.initializer:
            digest.update(tensor.SerializeToString(deterministic=True))
        for node in self.model.graph.node:
            digest.update(node.SerializeToString(deterministic=True))
        return digest.hexdigest()

    def layer_cost(self, layer: str) -> float:
        """The number of weight values of a layer (node name): what keeping it float costs, roughly."""
        return self._weight_sizes.get(layer, 0.0)

    @functools.cached_property
    def _weight_sizes(self) -> dict[str, float]:
        sizes = {t.name: int(np.prod(t.dims)) for t in self.model.graph.initializer}
        return {n.name: float(sizes.get(n.input[1], 0)) for n in self.model.graph.node if len(n.input) > 1}

    def build(self, float_layers: Sequence[str] = ()) -> onnx.ModelProto:
        """The model quantized by the recipe, except `float_layers` (node names); the all-int8 one is built once per
        recipe (choosing a recipe and searching its floor both start from it)."""
        if not float_layers and self._all_int8 is not None and self._all_int8[0] == self.recipe:
            return self._all_int8[1]
        out = Path(self._tmp.name) / "quantized.onnx"
        # ORT's histogram calibration prints its progress: keep the CLI's output clean
        with quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):
            if self.recipe.mode == "dynamic":
                self._dynamic(out, list(float_layers))
            else:
                self._static(out, list(float_layers))
        model = onnx.load(str(out))
        if self.recipe.mode == "static":
            model, _ = clamps_dropped(model)
        if self.recipe.round_weights:
            model, _ = rounded(model, self._layers, self._moments_from.input_moments, self._rounded)
        if self.recipe.correct_bias:
            correct = bias_corrected if self.recipe.mode == "static" else dynamic_bias_corrected
            model, _ = correct(model, self.model, self._input_means)
        if not float_layers:
            self._all_int8 = (self.recipe, model)
        return model

    @functools.cached_property
    def _layers(self) -> dict[str, Layer]:
        return weighted_layers(self.model)

    def input_moments(self) -> dict[str, Moments]:
        """Each layer's H on this builder's calibration inputs (computed on each call: it is not held)."""
        return input_hessians(self.model, self._layers, self._moment_feeds)

    @functools.cached_property
    def _input_means(self) -> dict[str, np.ndarray]:
        return input_means(self.model, self._feeds)

    def with_recipe(self, recipe: Recipe) -> Int8Builder:
        """The same builder (its prepared model and calibrated ranges) for another recipe of the same mode and
        calibration method: per-tensor instead of per-channel weights, GPTQ rounding or bias correction on or off,
        or fewer operator types than it was calibrated for (the ranges cover a superset)."""
        kept = ("mode", "calibrate", "smooth", "outliers")
        assert all(getattr(recipe, k) == getattr(self.recipe, k) for k in kept)
        self.recipe = recipe if self.per_channel_ok else replace(recipe, per_channel=False)
        return self

    def recalibrated(self, feeds: Sequence[Feed]) -> Int8Builder:
        """A static builder of the same pre-processed model and operator types, calibrated on `feeds` instead."""
        built = Int8Builder(self.model, replace(self.recipe, ops=self._calibrated_ops), feeds, prepared_by=self)
        # GPTQ's integers as they were scored (H from the feeds the scores were built on), not solved again
        built._rounded, built._moments_from = self._rounded, self
        return built

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> Int8Builder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _dynamic(self, out: Path, exclude: list[str]) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(self._source, out, op_types_to_quantize=list(self.recipe.ops),
                         per_channel=self.recipe.per_channel, reduce_range=self.recipe.reduce_range,
                         weight_type=QuantType.QInt8, nodes_to_exclude=_gemm_aliases(exclude) + self.float_only,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})

    def _static(self, out: Path, exclude: list[str]) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[self.recipe.calibrate]
        # uint8 activations (asymmetric: ReLU outputs use the whole range), int8 weights: ONNX Runtime's advice
        # for CPUs
        if not self._cache.exists() and set(self._calibrated_ops) - set(self.recipe.ops):
            # ONNX Runtime calibrates the tensors of the operator types asked for and caches them: a narrower scope
            # built first would leave a wider one without ranges
            self._calibrate_for(self._calibrated_ops, method)
        def quantize() -> None:
            with calibration_in_priority_order():
                quantize_static(self._source, out, FeedReader(self._feeds), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(self.recipe.ops), per_channel=self.recipe.per_channel,
                                reduce_range=self.recipe.reduce_range, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=method,
                                calibration_cache_path=self._cache, extra_options=self._static_options)
        try:
            quantize()
        except ValueError as exc:
            # ONNX Runtime's check that an int32 bias fits its scale reads the bias as 1-D and fails on a [1, N] one
            # (magika's Gemm): without that check the bias is quantized all the same (a bias beyond int32 would
            # saturate, which the fidelity score sees)
            if "truth value of an array" not in str(exc) or self._static_options.get(NO_BIAS_CHECK):
                raise
            self._static_options = {**self._static_options, NO_BIAS_CHECK: True}
            quantize()

    def _calibrate_for(self, ops: tuple[str, ...], method) -> None:
        """Fill the range cache for every tensor of `ops` (one quantization whose model is thrown away)."""
        from onnxruntime.quantization import QuantFormat, quantize_static

        with calibration_in_priority_order():
            quantize_static(self._source, Path(self._tmp.name) / "calibrated.onnx", FeedReader(self._feeds),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(ops), calibrate_method=method,
                            calibration_cache_path=self._cache, extra_options=STATIC_OPTIONS)


def _gemm_aliases(names: list[str]) -> list[str]:
    """Node names to exclude from dynamic int8, with the name ONNX Runtime gives a Gemm it rewrites as MatMul
    (`name_MatMul`) before it checks the exclusions: without it a Gemm kept float by mixed precision was int8."""
    return names + [f"{name}_MatMul" for name in names]


def _weighted(node: onnx.NodeProto, constants: set[str]) -> bool:
    """A layer with a constant weight (the second input): what int8 makes smaller and faster."""
    return len(node.input) > 1 and node.input[1] in constants


def _spread(feeds: list[Feed], most: int) -> list[Feed]:
    if len(feeds) <= most:
        return feeds
    return [feeds[int(i)] for i in np.linspace(0, len(feeds) - 1, most).round()]


class FeedReader:
    """ONNX Runtime's CalibrationDataReader over a list of feeds, with the range selection that strided
    calibration uses."""

    def __init__(self, feeds: list[Feed]):
        self._feeds = feeds
        self.set_range(0, len(feeds))

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._feeds[start_index:end_index])

    def get_next(self):
        return next(self._it, None)
