"""Small PyTorch models of families the samples do not cover (test-only, fixed seeds)."""

import torch
from torch import nn


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, LayerNorm, then an MLP written as 1×1 convolutions (CNN style)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.GroupNorm(1, dim)
        self.pw1, self.act, self.pw2 = nn.Conv2d(dim, 4 * dim, 1), nn.GELU(), nn.Conv2d(4 * dim, dim, 1)

    def forward(self, x):
        return x + self.pw2(self.act(self.pw1(self.norm(self.dw(x)))))


class TinyConvNeXt(nn.Module):
    input_names, output_names = ["image"], ["logits"]
    dynamic_axes = {"image": {0: "batch"}, "logits": {0: "batch"}}

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 4, 4)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(32) for _ in range(2)])
        self.head = nn.Linear(32, 10)

    def forward(self, image):
        return self.head(self.blocks(self.stem(image)).mean((2, 3)))

    def example_inputs(self):
        return (torch.rand(1, 3, 32, 32),)


class SpeechLSTM(nn.Module):
    """Log-mel frames → conv front end → LSTM → an MLP head per frame (keyword-spotting style)."""

    input_names, output_names = ["features"], ["frame_logits"]
    dynamic_axes = {"features": {0: "batch", 1: "frames"}, "frame_logits": {0: "batch", 1: "frames"}}

    def __init__(self):
        super().__init__()
        self.front = nn.Conv1d(40, 64, 3, padding=1)
        self.lstm = nn.LSTM(64, 64, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
        self.out = nn.Linear(64, 12)

    def forward(self, features):
        x = self.front(features.transpose(1, 2)).transpose(1, 2)
        x, _ = self.lstm(x)
        return self.out(x + self.mlp(x))

    def example_inputs(self):
        return (torch.randn(1, 50, 40),)


class WaveEncoder(nn.Module):
    """Raw 16 kHz waveform → a strided conv feature encoder (wav2vec2 style: its receptive field needs
    hundreds of samples per frame) → LayerNorm → gated-MLP (SwiGLU) and GELU-MLP blocks → utterance logits."""

    input_names, output_names = ["input_values"], ["logits"]
    dynamic_axes = {"input_values": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size"}}

    def __init__(self, dim: int = 48):
        super().__init__()
        convs = [nn.Conv1d(1, dim, 10, 5)] + [nn.Conv1d(dim, dim, 3, 2) for _ in range(6)]
        self.convs = nn.ModuleList(convs)
        self.norm = nn.LayerNorm(dim)
        self.gate, self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.head = nn.Linear(dim, 8)

    def forward(self, input_values):
        x = input_values[:, None]
        for conv in self.convs:
            x = nn.functional.gelu(conv(x))
        x = self.norm(x.transpose(1, 2))
        x = x + self.down(nn.functional.silu(self.gate(x)) * self.up(x))
        x = x + self.mlp(x)
        return self.head(x.mean(1))

    def example_inputs(self):
        return (torch.randn(1, 16000),)


def wave_encoder():
    torch.manual_seed(0)
    return WaveEncoder().eval()


def tiny_convnext():
    torch.manual_seed(0)
    return TinyConvNeXt().eval()


def speech_lstm():
    torch.manual_seed(0)
    return SpeechLSTM().eval()
