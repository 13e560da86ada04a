"""Attention blocks: discovery, head removal and the Reshape constants that hold head counts."""
