"""Attention blocks: discovery, removing heads (`head_cut`: the heads and gates passes), the Reshape constants
that hold head counts."""
