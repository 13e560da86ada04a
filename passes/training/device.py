"""Where torch training runs (`--train-device auto|cpu|cuda`): recovery distillation, gates and GRASP's affines.

Users compile on a workstation, often with a GPU, for a small device: the training is the part of a compile that
a GPU speeds up, and nothing else changes (the teacher runs in ONNX Runtime on the CPU, every score is ONNX
Runtime's, the weights come back to the CPU before they are written). `auto` picks CUDA where torch sees one.
"""

from __future__ import annotations

CHOICES = ("auto", "cpu", "cuda")


class TrainDeviceUnavailable(ValueError):
    """The device asked for is not there (an input error: exit 2)."""


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_train_device(choice: str) -> str:
    """'cpu' or 'cuda' for a --train-device choice; a clear error where CUDA is asked for and absent."""
    if choice not in CHOICES:
        raise TrainDeviceUnavailable(f"--train-device {choice!r}: choose one of {', '.join(CHOICES)}")
    if choice == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if choice == "cuda":
        raise TrainDeviceUnavailable("--train-device cuda: torch sees no CUDA GPU here (torch.cuda.is_available() "
                                     "is False: a CPU-only torch build, no driver, or no GPU); use --train-device "
                                     "cpu or auto")
    return "cpu"


def describe(device: str) -> str:
    """The device's name for the report: 'cpu' or the GPU's model."""
    if device != "cuda":
        return "cpu"
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)})"
