"""Transformer MLP blocks in a graph: discovery (with near-miss reasons), activations, the Linear layers every
MLP pass reads (`linear`) and rewrites (`edit`), and removing hidden units (`units`: prune and gates)."""
