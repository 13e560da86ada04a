"""Zeroth-order tuning of GRASP group affines through ONNX Runtime, numpy only (it also runs on a device).

- `tuner`: the loop (θ ↔ the tuning graph's γ/β feeds, budget, held-out scoring, best θ kept), `SiteSlot`,
  `ZOSettings`, `ZOResult`, `group_index`
- `steps`: the per-batch step rules (subspace Gauss-Newton, SPSA with Adam)
- `jacobian`: the pooled finite-difference Gauss-Newton rule
- `job`: one tuning job where the data lives (`ZOJob`; JSON only at the device boundary)
"""
