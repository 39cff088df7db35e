"""EBU R128 loudness of mono 48 kHz audio, measured in numpy as the blocks stream past (no extra decode pass).

ITU-R BS.1770-4 / EBU Tech 3341-3342: K-weighting (the two published 48 kHz biquads), mean square over 400 ms
blocks every 100 ms, integrated loudness with the -70 LUFS absolute and -10 LU relative gates, loudness range
from 3 s short-term blocks (absolute -70, relative -20 LU gates, 10th to 95th percentile), and true peak from a
4x oversampled signal (pipelines.media.truepeak, which upsamples only where the maximum can be). Memory is one
number per 1 ms of audio (the K-weighted energy of each tick, which the normaliser's limiter prediction reads)
plus the current block.

join_audio measures with this while it joins the job's audio, and write_normalised again while it writes the track,
so loudness normalisation needs no decode pass and no ffmpeg loudnorm (which works at 192 kHz). ffmpeg's own
measurement (`audio.measure_loudness`) stays the independent reference the tests and QC compare against.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.media.truepeak import CONTEXT, peak_max

RATE = 48_000
_HOP = RATE // 10  # 100 ms: the gating blocks' step
TICK = RATE // 1000  # 1 ms: the resolution kept for the normaliser's limiter prediction
# K-weighting at 48 kHz (BS.1770-4 table 1 and 2): a high shelf for the head, then the RLB high-pass.
_SHELF = (
    np.array([1.53512485958697, -2.69169618940638, 1.19839281085285]),
    np.array([1.0, -1.69065929318241, 0.73248077421585]),
)
_HIGHPASS = (np.array([1.0, -2.0, 1.0]), np.array([1.0, -1.99004745483398, 0.99007225036621]))
# both biquads as second-order sections: one sosfilt pass runs the cascade in half the time of two lfilters
_K_WEIGHTING = np.array([np.concatenate(_SHELF), np.concatenate(_HIGHPASS)])
_PEAK_CONTEXT = 2 * CONTEXT  # samples of the previous block each block's peaks are found with
# input samples at a block's end whose upsampled values wait for the next block (the filter reaches 10)
_EDGE = CONTEXT


def _lufs(mean_square: np.ndarray | float) -> np.ndarray | float:
    return -0.691 + 10.0 * np.log10(np.maximum(mean_square, 1e-30))


class LoudnessMeter:
    """Feed mono 48 kHz float blocks of any length in order; `result()` any time after.

    The K-weighted energy is kept per 1 ms tick (48 samples), and the true peak as the largest so far. The
    R128 figures sum ticks into 100 ms hops; `tick_energy()` hands them to the normaliser, which predicts from
    them (and the ticks' peaks, truepeak.TickPeaks) what a limiter would do to the loudness without another
    pass over the audio.
    """

    def __init__(self) -> None:
        self._zi = np.zeros((len(_K_WEIGHTING), 2))  # the filter state, carried from block to block
        self._energy: list[np.ndarray] = []  # K-weighted sum of squares per complete tick
        self._partial = np.zeros(0)  # K-weighted samples of the unfinished tick
        self._peak = 0.0  # the true peak (linear) of the samples before the last _EDGE
        self._tail = np.zeros(0)  # last samples seen, context for the next block's peaks
        self.samples = 0

    def feed(self, block: np.ndarray) -> None:
        from scipy.signal import sosfilt

        x = np.asarray(block, np.float64).ravel()
        if not len(x):
            return
        self.samples += len(x)
        y, self._zi = sosfilt(_K_WEIGHTING, x, zi=self._zi)
        y = np.concatenate([self._partial, y])
        whole = len(y) // TICK * TICK
        if whole:
            self._energy.append((y[:whole].reshape(-1, TICK) ** 2).sum(axis=1))
        self._partial = y[whole:]
        # The previous block's last samples go in front, as context. The last _EDGE samples of a block are
        # counted only on the next call, once samples after them exist: the filter would otherwise see zeros
        # there and ring past the real peak. result() counts the final ones, where the audio does end.
        joined = np.concatenate([self._tail, x.astype(np.float32)])
        self._peak = peak_max(
            joined, max(len(self._tail) - _EDGE, 0), max(len(joined) - _EDGE, 0), self._peak
        )
        self._tail = joined[-_PEAK_CONTEXT:]

    def tick_energy(self) -> np.ndarray:
        """The K-weighted energy of each complete 1 ms tick, in order."""
        return np.concatenate(self._energy) if self._energy else np.zeros(0)

    def result(self):
        """A pipelines.media.audio.Loudness: integrated LUFS, true peak dBTP, LRA LU, relative-gate threshold."""
        tail = self._tail
        peak = peak_max(tail, max(len(tail) - _EDGE, 0), len(tail), self._peak)
        return loudness_of(_hops(self.tick_energy()), peak)


def _hops(tick_energy: np.ndarray) -> np.ndarray:
    """Energy of every complete 100 ms hop from the energies of its ticks."""
    per_hop = _HOP // TICK
    whole = len(tick_energy) // per_hop * per_hop
    return tick_energy[:whole].reshape(-1, per_hop).sum(axis=1)


def loudness_of(hop_energy: np.ndarray, peak: float):
    """Loudness figures from K-weighted energies per 100 ms hop and the true peak (linear)."""
    from pipelines.media.audio import Loudness

    integrated, threshold = _integrated(hop_energy)
    true_peak = 20.0 * math.log10(peak) if peak > 0 else -math.inf
    return Loudness(integrated, true_peak, _range(hop_energy), threshold)


def integrated_loudness(hop_energy: np.ndarray) -> float:
    """Integrated loudness (LUFS) alone, from K-weighted energies per 100 ms hop."""
    return _integrated(hop_energy)[0]


def _blocks(energy: np.ndarray, hops: int) -> np.ndarray:
    """Mean square of every window of `hops` consecutive 100 ms hops (step one hop)."""
    if len(energy) < hops:
        return np.zeros(0)
    sums = np.convolve(energy, np.ones(hops), mode="valid")
    return sums / (hops * _HOP)


def _integrated(energy: np.ndarray) -> tuple[float, float]:
    z = _blocks(energy, 4)  # 400 ms, 75 % overlap
    if not len(z):
        return -math.inf, -70.0  # shorter than one gating block: no integrated loudness (as ffmpeg reports)
    z = z[_lufs(z) > -70.0]
    if not len(z):
        return -70.0, -70.0  # loudnorm's figures for audio with nothing above the absolute gate
    threshold = float(_lufs(z.mean())) - 10.0
    gated = z[_lufs(z) > threshold]
    return float(_lufs(gated.mean())), threshold


def _range(energy: np.ndarray) -> float:
    short = _lufs(_blocks(energy, 30))  # 3 s short-term loudness, every 100 ms
    short = short[short > -70.0]
    if not len(short):
        return 0.0
    relative = float(_lufs(np.mean(10.0 ** ((short + 0.691) / 10.0)))) - 20.0
    short = short[short > relative]
    if not len(short):
        return 0.0
    low, high = np.percentile(short, [10, 95])
    return float(high - low)


def measure(samples: np.ndarray):
    """Loudness of samples held in memory (short clips; long audio goes through LoudnessMeter block by block)."""
    meter = LoudnessMeter()
    meter.feed(samples)
    return meter.result()
