"""int8 recipes for the quantize pass, built with ONNX Runtime's quantization tools (no quantizer of our own).

- `prepare`: what a graph needs before static (QDQ) quantization: opset ≥ 13 for per-channel scales, ONNX
  Runtime's own pre-processing (shape inference, BatchNormalization folded into its Conv), named nodes.
- `recipes`: one int8 recipe (dynamic or static, which operators, calibration method) as a builder of
  quantized models with any set of layers left float; static ranges are calibrated once and cached.
- `mixed`: mixed precision — the fewest, most sensitive layers kept float until a fidelity floor holds.
"""
