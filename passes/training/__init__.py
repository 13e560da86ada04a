"""Everything that trains with torch (imported lazily by the passes): the torch view of a graph and its
ops, its round-trip check against ONNX Runtime (`round_trip`), the one training loop, and its users:
recovery distillation (`passes.recovery` drives it), the gates pass's learned masks, low-rank refinement and
shared-basis reconstruction."""
