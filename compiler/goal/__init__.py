"""`compile --goal`: candidate pipelines tried against a speed or size goal, the most faithful passing one kept.

- `driver`: parse the goal, list the candidates, choose (and report what was tried)
- `halving`: with --recover, one training budget shared among the candidates by successive halving
- `trials`: each round's candidates as executor tasks, timed here one after another against the original
"""
