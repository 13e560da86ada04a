"""Speech / audio models of the sweep: voice-activity detectors with their recurrent state threaded
the way each package does, openWakeWord's feature front end and Spotify's basic-pitch.

Stateful models: `feeds` runs the original model over a whole synthetic stream and keeps the inputs
(audio chunk + the state the previous step produced) of a dozen steps, so each feed is what the
package would pass at that point of the stream.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from edgec.samples.sweep_inputs import (
    FEEDS,
    checked,
    decisions,
    embedding_agreement,
    rng,
    speech_like,
    top1,
    voiced,
)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _stream(session, chunks: list[dict], state: dict, carry: dict[str, int], keep: int) -> list[dict]:
    """Run `chunks` in order, feeding output `carry[name]` back as input `name`; return `keep`
    evenly spaced complete feeds (chunk inputs + the state at that step)."""
    feeds = []
    for chunk in chunks:
        feed = {**chunk, **state}
        outs = session.run(None, feed)
        feeds.append(feed)
        state = {name: outs[i] for name, i in carry.items()}
    picks = np.linspace(len(feeds) // 8, len(feeds) - 1, keep).astype(int)
    return [feeds[i] for i in picks]


def _with_context(audio: np.ndarray, window: int, context: int) -> list[np.ndarray]:
    """silero-vad >= 5 prepends the previous chunk's last `context` samples (zeros at the start)."""
    out, prev = [], np.zeros((audio.shape[0], context), np.float32)
    for start in range(0, audio.shape[1] - window + 1, window):
        x = np.concatenate([prev, audio[:, start : start + window]], axis=1)
        out.append(x)
        prev = x[:, -context:]
    return out


def silero_feeds(model: onnx.ModelProto, rates: tuple[int, ...] = (16000,), seed: int = 201) -> list[dict]:
    """Two parallel streams (batch 2) of speech-like audio per sample rate; 512 (+64 context) samples
    per chunk at 16 kHz, 256 (+32) at 8 kHz; `sr` is a scalar int64 input."""
    session, r, feeds = _session(model), rng(seed), []
    names = {i.name for i in session.get_inputs()}
    for sr in rates:
        audio = np.stack([speech_like(sr, 4.0, r) for _ in range(2)])
        window = 512 if sr == 16000 else 256
        rate = {"sr": np.array(sr, np.int64)} if "sr" in names else {}  # silero_vad_half has no `sr` input
        chunks = [{"input": x, **rate} for x in _with_context(audio, window, window // 8)]
        state = {"state": np.zeros((2, 2, 128), np.float32)}
        feeds += _stream(session, chunks, state, {"state": 1}, FEEDS // len(rates))
    return feeds


def silero_v5_feeds(model: onnx.ModelProto) -> list[dict]:
    """The general silero_vad.onnx: an If on `sr` picks the 8 kHz or the 16 kHz branch."""
    return silero_feeds(model, rates=(16000, 8000), seed=202)


def silero_v3_feeds(model: onnx.ModelProto) -> list[dict]:
    """openWakeWord's VAD wrapper: int16 audio / 32767 in 480-sample frames, LSTM (h, c) of 2x1x64."""
    session, r = _session(model), rng(203)
    pcm = np.round(speech_like(16000, 6.0, r) * 32767).astype(np.int16)
    chunks = [{"input": (pcm[None, i : i + 480] / 32767).astype(np.float32), "sr": np.array(16000, np.int64)}
              for i in range(0, pcm.size - 479, 480)]
    state = {"h": np.zeros((2, 1, 64), np.float32), "c": np.zeros((2, 1, 64), np.float32)}
    return _stream(session, chunks, state, {"h": 1, "c": 2}, FEEDS)


def silero_seq_feeds(model: onnx.ModelProto) -> list[dict]:
    """faster-whisper's SileroVADModel: a whole clip at once as [windows, 64 + 512] rows (each row
    prefixed by the previous window's tail), LSTM h/c zeros."""
    r, feeds = rng(204), []
    for _ in range(FEEDS):
        clip = speech_like(16000, float(r.uniform(1.5, 5.0)), r)
        clip = np.pad(clip, (0, -clip.size % 512)).reshape(-1, 512)
        context = np.roll(np.concatenate([clip[:-1, -64:], np.zeros((1, 64), np.float32)]), 1, axis=0)
        feeds.append({"input": np.concatenate([context, clip], 1).astype(np.float32),
                      "h": np.zeros((1, 1, 128), np.float32), "c": np.zeros((1, 1, 128), np.float32)})
    return feeds


# ---------------------------------------------------------------- openWakeWord front end


def melspec_feeds(model: onnx.ModelProto) -> list[dict]:
    """openWakeWord feeds int16-valued float32 PCM: 1280-sample frames plus 480 samples of history
    when streaming, whole clips in batch mode."""
    r, feeds = rng(205), []
    for i in range(FEEDS):
        n = 1760 if i % 2 else int(r.choice([8000, 16000, 24000]))
        pcm = np.round(speech_like(16000, n / 16000 + 0.5, r, speech_frac=0.9)[:n] * 32767)
        feeds.append({"input": pcm[None].astype(np.float32)})
    return feeds


def log_mel(pcm: np.ndarray, sr: int = 16000, n_fft: int = 512, hop: int = 160, mels: int = 32) -> np.ndarray:
    """A numpy log-mel spectrogram [frames, mels] close to openWakeWord's melspectrogram model
    (power spectrum, 60-3800 Hz mel bank, 10*log10), after its x/10 + 2 transform."""
    frames = np.lib.stride_tricks.sliding_window_view(pcm, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(2595 * np.log10(1 + 60 / 700), 2595 * np.log10(1 + 3800 / 700), mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / sr)
    bank = np.clip(np.minimum((bins - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None]),
                              (edges[2:, None] - bins) / (edges[2:, None] - edges[1:-1, None])), 0, None)
    # -2.1: level-matched to the ONNX melspectrogram model, whose spectrum scaling sits ~21 dB lower.
    return (10 * np.log10(np.maximum(power @ bank.T, 1e-10)) / 10 + 2 - 2.1).astype(np.float32)


def embedding_feeds(model: onnx.ModelProto) -> list[dict]:
    """openWakeWord's embedding model: windows of 76 mel frames, stride 8, as [N, 76, 32, 1]."""
    r, feeds = rng(206), []
    for _ in range(FEEDS):
        mel = log_mel(np.round(speech_like(16000, 2.0, r, speech_frac=0.9) * 32767))
        starts = range(0, mel.shape[0] - 76 + 1, 8)
        feeds.append({"input_1": np.stack([mel[s : s + 76] for s in starts])[..., None][:16]})
    return feeds


def wakeword_feeds(model: onnx.ModelProto, embedding: onnx.ModelProto) -> list[dict]:
    """openWakeWord's keyword classifiers read the last T embeddings (96 values every 80 ms) that the
    embedding model (`embedding`, the sweep's oww-embedding) made of speech: [1, T, 96]."""
    r, embed, feeds = rng(208), _session(embedding), []
    name, frames = model.graph.input[0].name, model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    for _ in range(FEEDS):
        seconds = (76 + 8 * (frames - 1)) * 0.01 + 0.6
        mel = log_mel(np.round(speech_like(16000, seconds, r, speech_frac=0.9) * 32767))
        windows = np.stack([mel[s : s + 76] for s in range(0, mel.shape[0] - 75, 8)])[..., None]
        vectors = embed.run(None, {"input_1": windows})[0].reshape(-1, 96)
        feeds.append({name: vectors[-frames:][None].astype(np.float32)})
    return feeds


# ---------------------------------------------------------------- basic-pitch


def melody(sr: int, n: int, r: np.random.Generator) -> np.ndarray:
    """Plucked-string-like notes (MIDI 45-84, harmonics with exponential decay), some overlapping."""
    out, t = np.zeros(n), 0
    while t < n:
        length = int(sr * r.uniform(0.15, 0.8))
        f0 = 440.0 * 2 ** ((int(r.integers(45, 85)) - 69) / 12)
        tt = np.arange(min(length, n - t)) / sr
        note = sum(np.sin(2 * np.pi * k * f0 * tt) / k for k in range(1, 8) if k * f0 < sr / 2)
        out[t : t + tt.size] += note * np.exp(-tt * r.uniform(2, 6)) * r.uniform(0.2, 0.5)
        t += int(length * r.uniform(0.5, 1.0))
    return (out / max(1.0, np.abs(out).max()) + r.normal(0, 0.003, n)).astype(np.float32)


def basic_pitch_feeds(model: onnx.ModelProto) -> list[dict]:
    """Two 43844-sample windows at 22050 Hz per feed ([batch, samples, 1]); every third feed sings."""
    r, feeds = rng(207), []
    for i in range(FEEDS):
        clips = [voiced(22050, 43844, r) if i % 3 == 2 else melody(22050, 43844, r) for _ in range(2)]
        feeds.append({"serving_default_input_2:0": np.stack(clips)[..., None]})
    return feeds


def _pitch_task(feeds, orig, comp):
    """Onsets (output 0, package threshold 0.5) and note frames (output 1, threshold 0.3) must agree."""
    onset, _ = decisions(0, 0.5)(feeds, orig, comp)
    note, summary = decisions(1, 0.3, "note frames")(feeds, orig, comp)
    return min(onset, note), f"{summary}, onsets agree {100 * onset:.1f}%"


def _bins_within(index: int, tol: float):
    """Share of spectrogram bins within `tol` (output units) of the original."""

    def task(feeds, orig, comp):
        diffs = np.concatenate([np.abs(o[index] - c[index]).ravel() for o, c in zip(orig, comp, strict=True)])
        share = float((diffs <= tol).mean())
        return share, f"{100 * share:.2f}% of mel bins within {tol}"

    return task


SILERO_V5 = (silero_v5_feeds, checked(decisions(0, 0.5, "speech decisions"), need=0.97, tol=0.05, outputs=(0, 1)))
SILERO_16K = (silero_feeds, checked(decisions(0, 0.5, "speech decisions"), need=0.97, tol=0.05, outputs=(0, 1)))
SILERO_SEQ = (silero_seq_feeds, checked(decisions(0, 0.5, "speech decisions"), need=0.97, tol=0.05, outputs=(0,)))
SILERO_V3 = (silero_v3_feeds, checked(decisions(0, 0.5, "speech decisions"), need=0.97, tol=0.05,
                                      outputs=(0, 1, 2)))
MELSPEC = (melspec_feeds, checked(_bins_within(0, 0.5), need=0.99, tol=0.02))
EMBEDDING = (embedding_feeds, checked(embedding_agreement(0), need=0.99, tol=0.05))
WAKEWORD = (wakeword_feeds, checked(decisions(0, 0.5, "wake decisions"), need=1.0, tol=0.05))
WAKEWORD_CLASSES = (wakeword_feeds, checked(top1(0), need=1.0, tol=0.05))
BASIC_PITCH = (basic_pitch_feeds, checked(_pitch_task, need=0.98, tol=0.05, outputs=(0, 1, 2)))
