"""The original model as a teacher for recovery distillation: its outputs and named intermediate tensors
on any feed (ONNX Runtime), the training stream and the feeds early stopping scores on."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import onnx

from edgec.compiler.calibration import Feed, session_with_outputs
from edgec.runtime.fidelity import compare_outputs, token_mask
from edgec.runtime.session import SessionConfig


class Teacher:
    def __init__(self, original: onnx.ModelProto, config: SessionConfig, training: Callable[[], Iterable[Feed]],
                 held_out: list[Feed], judged: list[str] | None = None):
        self.original = original
        self.judged = judged
        self.config = config
        self._training = training
        self.held_out = held_out
        self._sessions: dict[tuple[str, ...], object] = {}

    def training_feeds(self) -> Iterable[Feed]:
        """One pass over the training data (a fresh stream on every call)."""
        return self._training()

    def has_tensor(self, name: str) -> bool:
        graph = self.original.graph
        return (any(t.name == name for t in list(graph.input) + list(graph.output))
                or any(name in n.output for n in graph.node))

    def run(self, feed: Feed, names: list[str]) -> list[np.ndarray]:
        key = tuple(names)
        if key not in self._sessions:
            model = onnx.ModelProto()
            model.CopyFrom(self.original)
            self._sessions[key] = session_with_outputs(model, names, self.config)
        return self._sessions[key].run(names, feed)

    @staticmethod
    def token_mask(feed: Feed) -> np.ndarray | None:
        """Which positions of per-token outputs are real tokens (the feed's attention mask), if known."""
        return token_mask(feed)

    @staticmethod
    def cosine(name: str, refs: list[np.ndarray], gots: list[np.ndarray], feeds: list[Feed]) -> float:
        """An output's fidelity score over feeds (cosine for vectors), the way the compile's verification measures it."""
        return compare_outputs(name, refs, gots, [token_mask(f) for f in feeds]).score
