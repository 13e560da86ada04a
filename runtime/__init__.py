"""ONNX Runtime side of edgec: sessions, inputs, fidelity and latency.

Imports only numpy and onnxruntime, so that it runs on a board that has nothing else.
"""
