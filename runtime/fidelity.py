"""How close a compiled model's outputs are to the original's, judged with a metric that fits each output.

Per-sample cosine says little about most outputs: a one-value regressor's cosine is only its sign, and
non-negative maps or probabilities have a cosine near 1 for almost anything. So each output gets a metric
(`output_metric`) and a `score` on the same 0..1 scale the gates use:
- `cosine`: signed vectors (embeddings, hidden states, logits) — the mean per-sample cosine, or 1 − the worst
  error / (10 × the output's range) where that is lower (0.99 = no value off by over 10 % of the range): a
  mean cosine hides a few values moved far (a logit that decides one character of an OCR line); for logits
  whose argmax is decisive (`_decisive`) also the top-1 agreement, whichever is lower;
- `range`: one- or few-value outputs (regression, scores), non-negative maps and probabilities —
  1 − error / the output's range over the whole set, the error being the RMS error or a fifth of the worst
  one, whichever is larger (0.99 = an RMS error within 1 % of the range and no value off by over 5 %);
  for class probabilities (rows that sum to 1) also the top-1 agreement, whichever is lower: an OCR
  recognizer's per-step probabilities hardly move in RMS while its argmax — the text read — changes;
  an output made by Sigmoid/Softmax (`compiler.bounded`) has a range of at least 1, whatever the feeds show;
- `agreement`: integer outputs (labels, indices) — the fraction of elements that are equal.
Non-finite values that the original has too (a -inf mask fill, a NaN it produces) count as equal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from edgec.runtime.neighbours import embedding_agreement


@dataclass(frozen=True)
class OutputFidelity:
    name: str
    metric: str          # cosine | range | agreement (see the module docstring)
    score: float         # what the gates compare: 1.0 = identical
    cosine: float        # mean over samples of the per-sample cosine similarity
    min_cosine: float    # worst sample
    rel_l2: float        # ||a - b|| / ||a|| over everything
    max_abs: float
    top1_agreement: float | None = None     # for logits: argmax along the last axis agrees
    nn_agreement: float | None = None       # for embeddings: nearest neighbour in the set agrees
    similarity_spearman: float | None = None  # rank correlation of pairwise similarities

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def token_mask(feed: dict[str, np.ndarray]) -> np.ndarray | None:
    """The feed's attention mask ([batch, sequence], non-zero = a real token), if it has one."""
    for key, value in feed.items():
        if "attention_mask" in key.lower() and np.asarray(value).ndim == 2:
            return np.asarray(value) != 0
    return None


def real_tokens(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Per-token outputs ([batch, sequence, ...]) at the real tokens only: padding positions carry values no
    consumer reads, and comparing them would judge the model on garbage."""
    if mask is None or a.ndim < 2 or a.shape[:2] != mask.shape or mask.all() or not mask.any():
        return a
    return a[mask]


VECTOR_MIN_VALUES = 8     # fewer values per sample than this are "few-value" outputs, judged by range


def comparable(value) -> np.ndarray:
    """An output as ONNX Runtime returns it, as one array: tensors as they are, a sequence of maps
    (scikit-learn's ZipMap probabilities) as rows of its values by key, a sequence of tensors flattened."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, dict):
        return np.asarray([value[k] for k in sorted(value)])
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            return np.asarray([[v[k] for k in sorted(v)] for v in value])
        if value and all(isinstance(v, np.ndarray) for v in value):
            return np.concatenate([v.ravel() for v in value])
    return np.asarray(value)


def output_metric(ref: list[np.ndarray]) -> str:
    """The metric that fits an output, from the original's values over the whole set."""
    if not np.issubdtype(ref[0].dtype, np.floating):
        return "agreement"
    finite = [a[np.isfinite(a)] for a in ref]
    non_negative = all(f.size == 0 or f.min() >= 0 for f in finite)
    return "range" if _few_values(ref) or non_negative else "cosine"


def _few_values(ref: list[np.ndarray]) -> bool:
    """Fewer than VECTOR_MIN_VALUES values per sample: a regressor's predictions, a few scores. A 1-D output
    is one value per sample ([batch] regressors); otherwise axis 0 is the batch."""
    return min(a.size // max(a.shape[0], 1) if a.ndim > 1 else 1 for a in ref) < VECTOR_MIN_VALUES


def compare_outputs(name: str, ref: list[np.ndarray], got: list[np.ndarray],
                    masks: list[np.ndarray | None] | None = None, unit: bool = False) -> OutputFidelity:
    """Compare one output over a list of samples (one array per held-out feed); `masks` (one per sample,
    from `token_mask`) restricts per-token outputs to the real tokens; `unit`: the output is a probability by
    construction (`compiler.bounded`), whose range counts as the unit interval at least."""
    if len(ref) != len(got) or not ref:
        raise ValueError("need the same non-zero number of reference and compiled samples")
    for a, b in zip(ref, got, strict=True):
        if np.shape(a) != np.shape(b):
            raise ValueError(f"output '{name}': shape {np.shape(b)} differs from the original {np.shape(a)}")
    if masks is not None:
        ref = [real_tokens(np.asarray(a), m) for a, m in zip(ref, masks, strict=True)]
        got = [real_tokens(np.asarray(b), m) for b, m in zip(got, masks, strict=True)]
    metric = output_metric([np.asarray(a) for a in ref])
    if metric == "agreement" and not np.issubdtype(np.asarray(ref[0]).dtype, np.number):   # strings, labels
        agree = float(np.mean(np.concatenate([np.asarray(a).ravel() == np.asarray(b).ravel()
                                              for a, b in zip(ref, got, strict=True)])))
        return OutputFidelity(name, metric, agree, agree, agree, 1.0 - agree, float("nan"))
    ref, got, finite = _shared_non_finite_zeroed(ref, got)
    if not finite:
        return OutputFidelity(name, metric, float("nan"), float("nan"), float("nan"), float("inf"), float("inf"))
    a_all = np.concatenate([a.ravel() for a in ref])
    b_all = np.concatenate([b.ravel() for b in got])
    cos = [_cosine(a, b) for a, b in zip(ref, got, strict=True)]
    norm = float(np.linalg.norm(a_all))
    diff = float(np.linalg.norm(a_all - b_all))
    rel = diff / norm if norm > 0 else (0.0 if diff == 0 else float("inf"))
    max_abs = float(np.max(np.abs(a_all - b_all))) if a_all.size else 0.0
    predictions = metric == "range" and _few_values(ref) and not _is_probability(ref)
    least = 1.0 if unit else 0.0
    score = {"cosine": min(float(np.mean(cos)), _worst_error_score(a_all, b_all)),
             "range": _prediction_score(a_all, b_all, least) if predictions else _channel_range_score(ref, got, least),
             "agreement": float(np.mean(a_all == b_all)) if a_all.size else 1.0}[metric]
    top1 = _top1_agreement(ref, got)
    if top1 is not None and ((metric == "range" and _is_probability(ref)) or (metric == "cosine" and _decisive(ref))):
        score = min(score, top1)
    nn, rho = embedding_agreement(ref, got)
    return OutputFidelity(name, metric, score, float(np.mean(cos)), float(np.min(cos)), rel, max_abs, top1, nn, rho)


def _shared_non_finite_zeroed(ref, got) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """float64 copies where values non-finite in both (the same NaN or infinity) are set to 0, and whether
    every other value is finite: a non-finite value only one side has is a difference that matters."""
    out_a, out_b, finite = [], [], True
    for a, b in zip(ref, got, strict=True):
        a, b = np.array(a, np.float64), np.array(b, np.float64)
        same = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
        a[same], b[same] = 0.0, 0.0
        finite = finite and bool(np.isfinite(a).all() and np.isfinite(b).all())
        out_a.append(a)
        out_b.append(b)
    return out_a, out_b, finite


def _is_probability(ref: list[np.ndarray]) -> bool:
    """Rows along the last axis that are distributions: in [0, 1] and summing to 1."""
    if ref[0].ndim < 1 or ref[0].shape[-1] < 2:
        return False
    rows = np.concatenate([a.reshape(-1, a.shape[-1]) for a in ref]) if len({a.shape[-1] for a in ref}) == 1 else None
    if rows is None or rows.size == 0 or rows.min() < 0 or rows.max() > 1 + 1e-4:
        return False
    return bool(np.mean(np.abs(rows.sum(axis=1) - 1) < 1e-3) > 0.99)


WORST_ERROR_SLACK = 5.0   # the worst value may be off by this many times the RMS error a score allows
COSINE_WORST_SLACK = 10.0  # … and of a cosine output, by this many times (1 − score) of its range: an int8
                           # sentence embedding moves single values by ~4 % of the range at cosine 0.997


def _channel_range_score(ref: list[np.ndarray], got: list[np.ndarray], least: float = 0.0) -> float:
    """The range score of each channel of a [batch, channels, ...] output (box coordinates and class scores
    in one YOLO tensor have different units), the lowest; a channel's range counts as at least 1e-3 of the
    whole output's so a near-constant channel does not magnify noise. 2-D [batch, features] outputs are
    judged whole: their columns (classes) are not channels."""
    a_all = np.concatenate([a.ravel() for a in ref])
    b_all = np.concatenate([b.ravel() for b in got])
    whole = _range_score(a_all, b_all, least)
    channels = {a.shape[1] if a.ndim >= 3 else 1 for a in ref}
    if len(channels) != 1 or channels == {1} or max(channels) > MAX_CHANNELS:
        return whole
    floor = max(1e-3 * float(np.ptp(a_all)) if a_all.size else 0.0, least)
    per_channel = [_range_score(np.concatenate([a[:, c].ravel() for a in ref]),
                                np.concatenate([b[:, c].ravel() for b in got]), floor)
                   for c in range(channels.pop())]
    return min([whole, *per_channel])


MAX_CHANNELS = 512


Z_99 = 2.576     # a normal error's 99th percentile of |e|, in units of its RMS


def _prediction_score(a: np.ndarray, b: np.ndarray, least: float = 0.0) -> float:
    """A regressor's predictions (few values per sample, each one a number the user reads): 1 − the error 99 %
    of predictions stay within, relative to the reference's range — Z_99 × the RMS error (a normal error model:
    a held-out set of a few dozen predictions rarely shows its tail), never less than the worst one seen. At 0.99
    that is 99 % of predictions within 1 % of the range, the way users check a regressor; the range score's
    RMS alone let an int8 surrogate move a fifth of its predictions by more than 1 % (surfaces-gbr in the sweep)."""
    if not a.size:
        return 1.0
    diff = np.abs(a - b)
    error = max(Z_99 * float(np.sqrt(np.mean(diff ** 2))), float(diff.max()))
    scale = max(float(a.max() - a.min()) or float(np.max(np.abs(a))), least)
    if scale < 1e-12:
        return 1.0 if error <= 1e-6 else 0.0
    return max(0.0, 1.0 - error / scale)


def _range_score(a: np.ndarray, b: np.ndarray, min_scale: float = 0.0) -> float:
    """1 − error relative to the reference's range (its largest magnitude when it is constant): the RMS
    error, or the worst one / WORST_ERROR_SLACK — a few values moved far (a box, a character) are damage
    that the RMS over a large output hides."""
    if not a.size:
        return 1.0
    diff = np.abs(a - b)
    error = max(float(np.sqrt(np.mean(diff ** 2))), float(diff.max()) / WORST_ERROR_SLACK)
    scale = max(float(a.max() - a.min()) or float(np.max(np.abs(a))), min_scale)
    if scale < 1e-12:                      # an output that is 0 everywhere: a tolerance, not a ratio
        return 1.0 if error <= 1e-6 else 0.0
    return max(0.0, 1.0 - error / scale)


def _worst_error_score(a: np.ndarray, b: np.ndarray) -> float:
    """1 − the worst error relative to COSINE_WORST_SLACK × the reference's range (1.0 for a constant one)."""
    scale = float(a.max() - a.min()) if a.size else 0.0
    if scale < 1e-12:
        return 1.0
    return max(0.0, 1.0 - float(np.abs(a - b).max()) / (COSINE_WORST_SLACK * scale))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _top1_agreement(ref: list[np.ndarray], got: list[np.ndarray]) -> float | None:
    """Argmax agreement along the last axis, for outputs that look like logits (last dim > 1)."""
    if ref[0].ndim < 1 or ref[0].shape[-1] < 2 or not np.issubdtype(ref[0].dtype, np.floating):
        return None
    agree = [np.argmax(a, -1) == np.argmax(b, -1) for a, b in zip(ref, got, strict=True)]
    return float(np.mean(np.concatenate([x.ravel() for x in agree])))


DECISIVE_MARGIN = 0.3   # median (top-1 − top-2) / range of the rows at which an output's argmax is its meaning


def _decisive(ref: list[np.ndarray]) -> bool:
    """Logits whose argmax is what the user reads: rows along the last axis whose top value clears the second by
    DECISIVE_MARGIN of the output's range in the median row (an OCR recognizer's per-step logits: 0.56 on the sweep's
    captcha CRNN, where 2 flipped steps of 320 changed 2 lines of 32 at a mean cosine of 0.9963). Embeddings, box
    maps and hidden states show medians under 0.2: their argmax means nothing."""
    if ref[0].ndim < 1 or ref[0].shape[-1] < 2 or len({a.shape[-1] for a in ref}) > 1:
        return False
    rows = np.concatenate([a.reshape(-1, a.shape[-1]) for a in ref])
    spread = float(np.ptp(rows)) if rows.size else 0.0
    if spread <= 0:
        return False
    top2 = np.partition(rows, rows.shape[1] - 2, axis=1)[:, -2:]
    return float(np.median(top2[:, 1] - top2[:, 0])) >= DECISIVE_MARGIN * spread


def compare_runs(names: list[str], refs: list[list], gots: list[list], feeds: list[dict[str, np.ndarray]],
                 units: frozenset[str] = frozenset()) -> list[OutputFidelity | str]:
    """Every output of two models run on the same feeds (`refs`/`gots`: session.run results, one list per
    feed), each compared with the metric that fits it, per-token outputs at the feeds' real tokens, `units`
    (probabilities by construction) against the unit interval at least; an output that cannot be compared
    (another shape than the original's) gives the reason instead."""
    masks = [token_mask(f) for f in feeds]
    results: list[OutputFidelity | str] = []
    for k, name in enumerate(names):
        try:
            results.append(compare_outputs(name, [comparable(r[k]) for r in refs], [comparable(g[k]) for g in gots],
                                           masks, name in units))
        except ValueError as exc:
            results.append(str(exc))
    return results


def relative_l2(refs: Sequence[np.ndarray], gots: Sequence[np.ndarray]) -> float | None:
    """‖got − ref‖ / ‖ref‖ in float64, pooled over pairs of arrays (one output on several feeds, or several
    outputs); pairs whose reference is not float or whose shapes differ are left out. None: nothing to measure
    (no float reference with energy)."""
    num = den = 0.0
    for ref, got in zip(refs, gots, strict=True):
        r, g = np.asarray(ref), np.asarray(got)
        if not np.issubdtype(r.dtype, np.floating) or r.shape != g.shape:
            continue
        r, d = r.astype(np.float64), g.astype(np.float64) - r
        num += float(np.vdot(d, d))
        den += float(np.vdot(r, r))
    return math.sqrt(num / den) if den else None
