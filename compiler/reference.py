"""The original model as the reference every compile step measures against.

`Reference` owns the original model, its session config and sessions, and the feeds with the original's
outputs; it hands the passes their three views of it (`passes.base`): the activation capture (statistics on
the fit feeds), the fidelity probe (a candidate graph scored on the search feeds) and the teacher (the
original's tensors on any feed, for training).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Iterable, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgec.compiler.bounded import unit_interval_outputs
from edgec.compiler.calibration.feeds import FeedSet
from edgec.compiler.capture import ActivationCapture, session_with_outputs
from edgec.passes.base import Feed
from edgec.passes.graph_tools import changed_initializers
from edgec.runtime.fidelity import compare_outputs, compare_runs, relative_l2, token_mask
from edgec.runtime.latency import measure_interleaved
from edgec.runtime.session import SessionConfig, create_session
from edgec.runtime.zo.tuner import SiteSlot, ZOResult, ZOSettings

MAX_TUNING_BATCHES = 256     # training batches whose original outputs zeroth-order tuning holds in memory


class Reference:
    def __init__(self, model: onnx.ModelProto, config: SessionConfig, session, feeds: FeedSet, seed: int = 0,
                 judged: list[str] | None = None):
        """`session` runs `model` with `config`; `judged`: the outputs the user's gate judges (None: all)."""
        self.model, self.config, self.session, self.feeds = model, config, session, feeds
        self.seed, self.judged = seed, judged
        self.output_names = [o.name for o in session.get_outputs()]
        self.units = unit_interval_outputs(model)     # probabilities by construction: judged on the unit interval
        self._sessions: dict[tuple[str, ...], object] = {}
        self._outputs: dict[int, tuple[Sequence[Feed], list[list[np.ndarray]]]] = {}   # id(feeds) → (feeds, outputs)
        self.memo: dict = {}          # what passes keep for the compile's later attempts (PassContext.memo)

    def run(self, feed: Feed, names: list[str]) -> list[np.ndarray]:
        """The original's tensors `names` (outputs or intermediates) on `feed` (one session per name list)."""
        key = tuple(names)
        if key not in self._sessions:
            model = onnx.ModelProto()
            model.CopyFrom(self.model)
            self._sessions[key] = session_with_outputs(model, names, self.config)
        return self._sessions[key].run(names, feed)   # type: ignore[attr-defined]

    def outputs_on(self, feeds: Sequence[Feed]) -> list[list[np.ndarray]]:
        """The original's outputs on `feeds` (the feed set's own where it holds them; else run once and kept).
        Kept by the identity of the list, which is held with them: pass the same list object to reuse them, and
        do not change a list after asking (a new list is run anew)."""
        if feeds is self.feeds.search and self.feeds.search_outputs:
            return self.feeds.search_outputs
        if feeds is self.feeds.held_out and self.feeds.held_out_outputs:
            return self.feeds.held_out_outputs
        if id(feeds) not in self._outputs:
            self._outputs[id(feeds)] = (feeds, [self.session.run(self.output_names, f) for f in feeds])
        return self._outputs[id(feeds)][1]

    def candidate_outputs(self, model: onnx.ModelProto, feeds: Sequence[Feed]) -> list[list[np.ndarray]]:
        """A candidate model's outputs (the original's output names) on `feeds`, with the original's settings."""
        session = create_session(model.SerializeToString(), self.config)
        return [session.run(self.output_names, f) for f in feeds]

    def compare(self, model: onnx.ModelProto, feeds: Sequence[Feed]) -> list:
        """Per output, the candidate's fidelity to the original on `feeds` (`runtime.fidelity.compare_runs`)."""
        return compare_runs(self.output_names, self.outputs_on(feeds), self.candidate_outputs(model, feeds), list(feeds),
                            self.units)

    def relative_change(self, model: onnx.ModelProto, feeds: Sequence[Feed], pooled: bool = False) -> float:
        """Relative L2 of the candidate's float outputs from the original's on `feeds`, over the outputs both
        have: the worst output's, or (`pooled`) over all of them together."""
        session = create_session(model.SerializeToString(), self.config)
        names = [n for n in (o.name for o in session.get_outputs()) if n in self.output_names]
        inputs = {i.name for i in session.get_inputs()}
        refs = self.outputs_on(feeds)
        gots = [session.run(names, {k: v for k, v in f.items() if k in inputs}) for f in feeds]
        columns = [([r[self.output_names.index(n)] for r in refs], [g[j] for g in gots]) for j, n in enumerate(names)]
        if pooled:
            columns = [([x for c in columns for x in c[0]], [x for c in columns for x in c[1]])]
        changes = [relative_l2(ref, got) for ref, got in columns]
        return max([c for c in changes if c is not None], default=0.0)

    def capture(self, every_feed: bool = False) -> ActivationCapture:
        """Statistics on the fit feeds, or with `every_feed` on the whole calibration set, fit then search (static
        int8 ranges, which must cover as many inputs as there are; scored, they come from the fit feeds alone)."""
        if every_feed:
            return ActivationCapture(self.feeds.calibration, self.config, self.model, self.seed,
                                     scored=len(self.feeds.search))
        return ActivationCapture(self.feeds.fit, self.config, self.model, self.seed)

    def probe(self) -> FidelityProbe:
        return FidelityProbe(self)

    def teacher(self) -> Teacher:
        return Teacher(self)

    def latency_probe(self) -> LatencyProbe:
        return LatencyProbe(self)


class FidelityProbe:
    """Min over outputs of the fidelity score (`runtime.fidelity`: cosine for vectors, range error for
    few-value or non-negative outputs, agreement for labels) against the original's outputs on the search feeds."""

    def __init__(self, reference: Reference):
        self.reference = reference
        feeds = reference.feeds
        self.expected = reference.outputs_on(feeds.search)
        self.calls = 0

    def __call__(self, graph: gs.Graph) -> float:
        from edgec.compiler.modelio import to_model

        ref = self.reference
        self.calls += 1
        sess = create_session(to_model(graph.copy(), ref.model).SerializeToString(), ref.config)
        got = [sess.run(ref.output_names, f) for f in ref.feeds.search]
        results = compare_runs(ref.output_names, self.expected, got, ref.feeds.search, ref.units)
        scores = [-1.0 if isinstance(f, str) or f.score != f.score else f.score for f in results]
        return min([1.0, *scores])


class LatencyProbe:
    """Median latency (ms) of candidate graphs timed side by side, interleaved, on the first search feed (the
    calibration data's real shapes) with the target's session settings: how a pass picks the faster rewrite."""

    # a model of ~100 µs timed 15 times is a millisecond of samples: its int8 read 0.82× then 1.02× (oww-hey-jarvis)
    def __init__(self, reference: Reference, warmup: int = 2, runs: int = 15, max_seconds: float = 10.0,
                 min_seconds: float = 0.5):
        self.reference, self.warmup, self.runs, self.max_seconds = reference, warmup, runs, max_seconds
        self.min_seconds = min_seconds

    def __call__(self, graphs: Sequence[gs.Graph]) -> list[float]:
        from edgec.compiler.modelio import to_model

        ref = self.reference
        feed = (ref.feeds.search or ref.feeds.held_out)[0]
        sessions = [create_session(to_model(g.copy(), ref.model).SerializeToString(), ref.config) for g in graphs]
        runners: list[Callable[[], object]] = [partial(s.run, None, feed) for s in sessions]
        samples = measure_interleaved(runners, self.warmup, self.runs, self.max_seconds, min_seconds=self.min_seconds)
        return [float(np.median(s)) * 1e3 for s in samples]


class Teacher:
    """The original for passes that train against it (`passes.base.TeacherSource`)."""

    def __init__(self, reference: Reference):
        self.reference = reference

    @property
    def search_feeds(self) -> Sequence[Feed]:
        return self.reference.feeds.search

    @property
    def judged(self) -> list[str] | None:
        return self.reference.judged

    def training_feeds(self) -> Iterable[Feed]:
        return self.reference.feeds.training_feeds()

    def has_tensor(self, name: str) -> bool:
        graph = self.reference.model.graph
        return (any(t.name == name for t in list(graph.input) + list(graph.output))
                or any(name in n.output for n in graph.node))

    def run(self, feed: Feed, names: list[str]) -> list[np.ndarray]:
        return self.reference.run(feed, names)

    def changed_initializers(self, model: onnx.ModelProto) -> frozenset[str]:
        return changed_initializers(model, self.reference.model)

    @staticmethod
    def token_mask(feed: Feed) -> np.ndarray | None:
        return token_mask(feed)

    def tune_affines(self, tuning: onnx.ModelProto, slots: list[SiteSlot], outputs: list[str],
                     settings: ZOSettings, batch: int, progress) -> ZOResult:
        """runtime.zo's tuner on this machine, on the training stream (its first MAX_TUNING_BATCHES batches,
        cycled) and the search feeds, each with the original's outputs on it."""
        import onnxruntime as ort

        from edgec.passes.batching import training_batches
        from edgec.runtime.zo.tuner import tune

        train = []
        for feed in training_batches(self.training_feeds(), batch):
            train.append((feed, dict(zip(outputs, self.run(feed, outputs), strict=True))))
            if len(train) >= MAX_TUNING_BATCHES:
                break
        if not train:
            raise ValueError("no training feeds")
        held = [(f, dict(zip(outputs, self.run(f, outputs), strict=True))) for f in self.search_feeds]
        try:
            session = ort.InferenceSession(tuning.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime refuses the tuning graph: the pass leaves the model
            raise ValueError(f"ONNX Runtime cannot run the tuning graph ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:160]})") from None
        judged = [n for n in outputs if self.judged is None or n in self.judged] or outputs
        return tune(session, slots, train, held, outputs, judged, settings, progress, self.reference.units)

    def cosine(self, name: str, refs: list[np.ndarray], gots: list[np.ndarray], feeds: Sequence[Feed]) -> float:
        """An output's fidelity score over feeds (cosine for vectors), the way the compile's verification measures it."""
        return compare_outputs(name, refs, gots, [token_mask(f) for f in feeds], name in self.reference.units).score
