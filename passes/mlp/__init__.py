"""Transformer MLP blocks in a graph: discovery (with near-miss reasons), activations, and the Linear
layers every MLP pass reads (`linear`) and rewrites (`edit`)."""
