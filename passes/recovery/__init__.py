"""Recovery: win back what compression cost by training against the original on the user's unlabeled data.

The `recover` pass (`passes/recover.py`) picks one of three ways; everything else lives here:

    options.py         RecoverOptions, and the typed settings each way takes from them (the only conversion;
                       AffineSettings: the group affines' layout)
    shared.py          what the ways share: the judged outputs, the intermediate tensors that teach, the
                       group affines' slots
    full_weights.py    1. backprop, every float32 weight of the torch view (params=full)
    group_affines.py   2. backprop, GRASP group affines γ, β through the torch view (params=grasp)
    forward_only.py    3. forward passes through ONNX Runtime only, group affines (method=zo; also where
                          torch or the view is missing): builds the tuning graph, the teacher runs the tuner
    blockwise.py       the fallback of 1. for a graph the view cannot run: MLP blocks trained one by one
    sites.py           where a group affine can sit and fold back exactly (ways 2 and 3, `edgec recover`)
    affines.py         groups ↔ channels, and the exact fold of γ, β into a site's constants
    tuning.py          the tuning graph: γ, β as graph inputs, for one ONNX Runtime session

Elsewhere, by layer: the torch view, its round-trip check and the distillation loop in `passes/training/`;
the zeroth-order tuner (numpy + onnxruntime, runs on a device too) in `runtime/zo/`; the `edgec recover` verb
(re-tune a compiled model here or over ssh) in `compiler/retune.py`; folding an adapter trained elsewhere in
`compiler/fold/grasp.py`.
"""
