"""`edgec fold`: fine-tuning deltas (DARE / DAREx) and LoRA adapters folded into base weights, verified."""
