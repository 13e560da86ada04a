"""Runnable sample models for edgec (importable as edgec.samples so `edgec export vit` works anywhere)."""

SAMPLES = {
    "vit": "edgec.samples.models:tiny_vit",
    "mixer": "edgec.samples.models:mlp_mixer",
    "minilm": "edgec.samples.minilm:minilm",
}
