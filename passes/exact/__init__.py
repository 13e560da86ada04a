"""Exact rewrites of what exporters write out in many ops into the one op ONNX Runtime runs (cleanup's fusions)."""
