"""Everything that trains with torch (imported lazily by the passes): the torch view of a graph and its
ops, the one training loop, and its four users: recovery distillation, block-wise recovery, low-rank
refinement and shared-basis reconstruction."""
