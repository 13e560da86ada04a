"""Small PyTorch models with transformer-style MLP blocks: a ViT and an MLP-Mixer.

Weights come from a fixed seed; they are untrained but have the real architectures' shapes and ops.
Each module offers `example_inputs()`, `input_names`, `output_names` and `dynamic_axes` for export.
"""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), act(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dim * mlp_ratio)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    input_names = ["pixel_values"]
    output_names = ["logits"]
    dynamic_axes = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}

    def __init__(self, image: int = 64, patch: int = 8, dim: int = 192, depth: int = 4, heads: int = 3,
                 mlp_ratio: int = 4, classes: int = 100):
        super().__init__()
        self.image = image
        self.patch = nn.Conv2d(3, dim, patch, patch)
        tokens = (image // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, pixel_values):
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))

    def example_inputs(self):
        return (torch.rand(1, 3, self.image, self.image),)


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1, self.token_mlp = nn.LayerNorm(dim), MLP(tokens, token_hidden)
        self.norm2, self.channel_mlp = nn.LayerNorm(dim), MLP(dim, channel_hidden)

    def forward(self, x):
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MLPMixer(nn.Module):
    input_names = ["pixel_values"]
    output_names = ["logits"]
    dynamic_axes = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}

    def __init__(self, image: int = 64, patch: int = 8, dim: int = 128, depth: int = 4, classes: int = 100):
        super().__init__()
        self.image = image
        tokens = (image // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.ModuleList(MixerBlock(tokens, dim, tokens * 2, dim * 4) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, pixel_values):
        x = self.stem(pixel_values).flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))

    def example_inputs(self):
        return (torch.rand(1, 3, self.image, self.image),)


def tiny_vit(seed: int = 0) -> TinyViT:
    torch.manual_seed(seed)
    return TinyViT().eval()


def mlp_mixer(seed: int = 0) -> MLPMixer:
    torch.manual_seed(seed)
    return MLPMixer().eval()
