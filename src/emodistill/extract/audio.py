"""Frame-level acoustic features of a mono waveform: the ``audio`` sequences ``(T_a, D_a)`` of MMSA files.

Two backends, chosen by :attr:`AudioConfig.backend`:

``"librosa"`` (default; extra ``video``). Every feature comes from one framing of the signal: frames of
``n_fft`` samples every ``hop_length`` samples, centred (the signal is zero-padded by ``n_fft // 2`` at both
ends), so frame ``t`` is centred on sample ``t * hop_length`` and ``T_a = 1 + S // hop_length``. With the
defaults (16 kHz, 1024 / 512) a frame spans 64 ms and there are 31.25 frames per second. In output order:

* ``mfcc_0 … mfcc_{n_mfcc-1}``: MFCCs, the orthonormal DCT-II of the log mel power spectrum
  (``n_mels`` Slaney-style triangular filters over 0 … sr/2 applied to the Hann-windowed power spectrum,
  in dB = 10·log10, floored at -100 dB). ``mfcc_0`` follows the frame's overall log energy.
* ``rms_db``: log RMS energy, 20·log10(RMS) of the raw (unwindowed) frame in dB re full scale: a full-scale
  sine gives -3.01 dB. Floored at -100 dB so that silence stays finite.
* ``f0_hz``: fundamental frequency in Hz from YIN (de Cheveigné & Kawahara, JASA 2002), searched in
  ``[fmin, fmax]``; 0 in unvoiced frames.
* ``voiced``: 1.0 if the frame is voiced, else 0.0. Voiced means periodic *and* loud enough:
  ``aperiodicity < voicing_threshold`` and ``rms_db > silence_db``. The energy gate is needed because
  the aperiodicity of near-silence (dither, hum) is meaningless.
* ``aperiodicity``: the depth of YIN's deepest trough, min over lags of the cumulative mean normalised
  difference d'(tau) (paper eq. 8), clipped to [0, 1]. It is 0 for a perfectly periodic frame, about 0.1
  to 0.35 in voiced speech and about 0.85 or more in white noise. Silent frames (below ``silence_db``) get 1.
* ``zcr``: zero-crossing rate, the fraction of adjacent sample pairs in the frame whose signs differ
  (crossings per sample). A sine of f Hz gives 2·f / sr.
* ``spectral_centroid_hz``: the magnitude-weighted mean frequency of the frame, in Hz.
* ``spectral_bandwidth_hz``: the magnitude-weighted standard deviation of frequency about the centroid, in Hz.
* ``spectral_rolloff_hz``: the lowest frequency below which 85 % of the spectral magnitude lies, in Hz.
* ``spectral_flatness``: the geometric mean of the power spectrum over its arithmetic mean, in (0, 1]. A pure
  tone gives about 0, white noise gives about e^-γ ≈ 0.56 and digital silence gives 1.

The values stay in their physical units, which differ in scale by orders of magnitude (as COVAREP's do in
MMSA files). Models are expected to normalise their inputs.

YIN is implemented here rather than taken from ``librosa.yin``. The reason is that ``librosa.yin`` returns
only F0, and its difference function shrinks the compared span as the lag grows, so even a pure sine never
reaches d' = 0 (about 0.04). This module uses the paper's fixed integration window
``W = n_fft - ceil(sr / fmin)`` (eq. 6), which gives a usable aperiodicity. The cost is one FFT per frame.
On voiced espeak speech its F0 agrees with ``librosa.pyin`` to 0.2 % (median).
``pyin`` itself is ~10x slower (0.4 s per 10 s clip).

``"opensmile"`` (extra ``opensmile``). These are openSMILE's low-level descriptors (LLDs) at a 10 ms hop,
i.e. 100 frames/s: eGeMAPSv02 (Eyben et al., IEEE TAC 2016; 25 LLDs) or ComParE_2016 (65 LLDs). The names are
openSMILE's column names, and the frame times are the centres of the (start, end) spans it reports.
**Licence:** openSMILE is distributed by audEERING under a research-only, non-commercial licence. Check it
before you use this backend in a product.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from emodistill.extract.errors import ExtractError, require

BACKENDS = ("librosa", "opensmile")
FLOOR_DB = -100.0
"""Floor of every dB value (``rms_db`` and the log mel spectrum), so silence gives finite features."""
_FLOOR_POWER = 10.0 ** (FLOOR_DB / 10.0)  # 1e-10: power at the floor
_ROLL_PERCENT = 0.85
_YIN_TROUGH_THRESHOLD = 0.1  # YIN step 4: take the first dip below this, else the global minimum


@dataclass
class AudioConfig:
    """How acoustic features are computed. Flat and serialisable: stored in checkpoints via :meth:`to_dict`."""

    backend: str = "librosa"
    """``"librosa"`` (default feature set, see module docstring) or ``"opensmile"`` (research-only licence)."""
    sample_rate: int = 16000
    """Sample rate (Hz) of the waveforms passed to the extractor."""
    n_fft: int = 1024
    """librosa: frame (and FFT) length in samples; 1024 = 64 ms at 16 kHz. Must be even."""
    hop_length: int = 512
    """librosa: samples between frame centres; 512 = 32 ms at 16 kHz (31.25 frames/s)."""
    n_mfcc: int = 20
    """librosa: number of MFCCs."""
    n_mels: int = 40
    """librosa: mel filters under the MFCCs (40 avoids empty filters at n_fft = 1024, 16 kHz)."""
    fmin: float = 65.0
    """librosa: lowest F0 searched, Hz. Two periods must fit in a frame: ``sr / fmin <= n_fft / 2``."""
    fmax: float = 500.0
    """librosa: highest F0 searched, Hz (at most sr / 2)."""
    voicing_threshold: float = 0.35
    """librosa: a frame is voiced when its YIN aperiodicity is below this (and it is not silent)."""
    silence_db: float = -60.0
    """librosa: frames with ``rms_db`` at or below this (dB re full scale) are never voiced."""
    opensmile_feature_set: str = "eGeMAPSv02"
    """opensmile: an ``opensmile.FeatureSet`` name, e.g. ``"eGeMAPSv02"`` (25 LLDs) or ``"ComParE_2016"`` (65)."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"AudioConfig.backend={self.backend!r}; expected one of {BACKENDS}")
        if self.sample_rate <= 0 or self.hop_length <= 0 or self.n_mfcc <= 0 or self.n_mels < self.n_mfcc:
            raise ValueError(
                f"AudioConfig needs sample_rate, hop_length, n_mfcc > 0 and n_mels >= n_mfcc; got "
                f"sample_rate={self.sample_rate}, hop_length={self.hop_length}, n_mfcc={self.n_mfcc}, "
                f"n_mels={self.n_mels}"
            )
        if self.n_fft <= 0 or self.n_fft % 2:
            raise ValueError(f"AudioConfig.n_fft={self.n_fft}; expected a positive even number of samples")
        if not 0 < self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(
                f"AudioConfig needs 0 < fmin < fmax <= sample_rate / 2; got fmin={self.fmin}, fmax={self.fmax}, "
                f"sample_rate={self.sample_rate}"
            )
        if np.ceil(self.sample_rate / self.fmin) > self.n_fft // 2:
            raise ValueError(
                f"AudioConfig.fmin={self.fmin} Hz is too low for n_fft={self.n_fft}: YIN needs two periods per "
                f"frame, i.e. fmin >= {2 * self.sample_rate / self.n_fft:.1f} Hz (or a larger n_fft)"
            )

    def to_dict(self) -> dict:
        """Flat dict of the fields (str/int/float only)."""
        return dataclasses.asdict(self)


class AudioFeatureExtractor:
    """Turns a mono waveform into a ``(T_a, D_a)`` float32 feature sequence.

    The constructor checks that the backend's library is installed, but stores no module, so an
    extractor can be pickled into worker processes.

    Example::

        ext = AudioFeatureExtractor(AudioConfig())
        feats = ext(wav)                       # (T_a, 29) for a (S,) float32 wav at 16 kHz
        times = ext.frame_times(len(feats))    # (T_a,) seconds
    """

    def __init__(self, cfg: AudioConfig) -> None:
        self.cfg = cfg
        if cfg.backend == "librosa":
            librosa = require("librosa", "video", "acoustic feature extraction (librosa backend)")
            # (n_mels, n_fft/2 + 1): Slaney mel filters, built once
            self._mel_basis = librosa.filters.mel(
                sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=0.0, fmax=cfg.sample_rate / 2
            ).astype(np.float32)
            self._window = _hann(cfg.n_fft)
            self._names = (
                [f"mfcc_{i}" for i in range(cfg.n_mfcc)]
                + ["rms_db", "f0_hz", "voiced", "aperiodicity", "zcr"]
                + ["spectral_centroid_hz", "spectral_bandwidth_hz", "spectral_rolloff_hz", "spectral_flatness"]
            )
            self._rate = cfg.sample_rate / cfg.hop_length
            self._first_centre = 0.0  # centred frames: frame t is centred on sample t * hop
        else:
            opensmile = require("opensmile", "opensmile", "openSMILE acoustic features")
            if cfg.opensmile_feature_set not in opensmile.FeatureSet.__members__:
                raise ValueError(
                    f"AudioConfig.opensmile_feature_set={cfg.opensmile_feature_set!r}; expected one of "
                    f"{sorted(opensmile.FeatureSet.__members__)}"
                )
            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet[cfg.opensmile_feature_set],
                feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
            )
            self._names = list(self._smile.feature_names)
            # openSMILE's frame grid (window length, hop) depends on the feature set, so read it off the
            # (start, end) index of a 0.5 s probe instead of hard-coding it.
            probe = self._smile.process_signal(np.zeros(cfg.sample_rate // 2, np.float32), cfg.sample_rate)
            start, end = _index_seconds(probe.index)
            self._rate = 1.0 / float(start[1] - start[0])
            self._first_centre = float(start[0] + end[0]) / 2

    @property
    def feature_names(self) -> list[str]:
        """The ``D_a`` feature names, in column order."""
        return list(self._names)

    @property
    def frame_rate(self) -> float:
        """Output frames per second: ``sample_rate / hop_length`` (librosa) or 100 (openSMILE LLDs)."""
        return self._rate

    def frame_times(self, n_frames: int) -> np.ndarray:
        """``(n_frames,)`` float64 centre time (s) of each output frame, relative to the first sample."""
        return self._first_centre + np.arange(n_frames) / self._rate

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        """Compute the features of one clip.

        Args:
            wav: ``(S,)`` mono waveform at ``cfg.sample_rate``, nominally in [-1, 1].

        Returns:
            ``(T_a, D_a)`` float32, all finite. With librosa, ``T_a = 1 + S // hop_length``.

        Raises:
            ValueError: ``wav`` is not one-dimensional.
            ExtractError: the waveform is empty or contains NaN/inf.
        """
        wav = np.asarray(wav)
        if wav.ndim != 1:
            raise ValueError(f"wav must be a mono (S,) array; got shape {wav.shape}")
        if wav.size == 0:
            raise ExtractError("audio track has no samples")
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        if not np.isfinite(wav).all():
            raise ExtractError("audio contains NaN or infinite samples")
        if self.cfg.backend == "librosa":
            return self._librosa_features(wav)
        with warnings.catch_warnings():
            # openSMILE fills a clip too short for one analysis window (< ~60 ms) with NaN and warns;
            # the NaN become 0 below, which keeps the all-finite contract.
            warnings.filterwarnings("ignore", message="Segment too short")
            feats = self._smile.process_signal(wav, self.cfg.sample_rate).to_numpy(np.float32)  # (T_a, D_a)
        return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)

    def _librosa_features(self, wav: np.ndarray) -> np.ndarray:
        librosa = require("librosa", "video", "acoustic feature extraction (librosa backend)")
        cfg = self.cfg
        half = cfg.n_fft // 2
        padded = np.pad(wav, half)  # (S + n_fft,): centres frame t on sample t * hop
        frames = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft)[:: cfg.hop_length]  # (T_a, n_fft)

        spec = np.abs(np.fft.rfft(frames * self._window, axis=1)).astype(np.float32)  # (T_a, F), F = n_fft/2+1
        mel_db = librosa.power_to_db(np.square(spec) @ self._mel_basis.T, amin=_FLOOR_POWER, top_db=None)
        mfcc = librosa.feature.mfcc(S=mel_db.T, n_mfcc=cfg.n_mfcc).T  # (T_a, n_mfcc)

        rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))  # (T_a,)
        rms_db = 20.0 * np.log10(np.maximum(rms, 10.0 ** (FLOOR_DB / 20.0)))
        f0, aperiodicity = _yin(frames, cfg.sample_rate, cfg.fmin, cfg.fmax)  # (T_a,), (T_a,)
        loud = rms_db > cfg.silence_db
        voiced = loud & (aperiodicity < cfg.voicing_threshold)
        f0 = np.where(voiced, f0, 0.0)
        aperiodicity = np.where(loud, np.minimum(aperiodicity, 1.0), 1.0)
        negative = frames < 0  # 0.0 and -0.0 both count as non-negative
        zcr = np.mean(negative[:, 1:] != negative[:, :-1], axis=1)  # (T_a,) crossings per sample

        spec_ft = spec.T  # (F, T_a): librosa's layout
        kw = {"sr": cfg.sample_rate, "n_fft": cfg.n_fft}
        centroid = librosa.feature.spectral_centroid(S=spec_ft, **kw)  # (1, T_a)
        bandwidth = librosa.feature.spectral_bandwidth(S=spec_ft, centroid=centroid, **kw)
        rolloff = librosa.feature.spectral_rolloff(S=spec_ft, roll_percent=_ROLL_PERCENT, **kw)
        flatness = librosa.feature.spectral_flatness(S=spec_ft, amin=_FLOOR_POWER)

        scalars = np.stack([rms_db, f0, voiced, aperiodicity, zcr], axis=1)  # (T_a, 5)
        spectral = np.concatenate([centroid, bandwidth, rolloff, flatness], axis=0).T  # (T_a, 4)
        out = np.concatenate([mfcc, scalars, spectral], axis=1).astype(np.float32)  # (T_a, D_a)
        if not np.isfinite(out).all():  # a bug, not a property of the clip: every term above is floored
            raise ExtractError(f"non-finite acoustic features in columns {np.where(~np.isfinite(out).all(0))[0]}")
        return out


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (n,), as ``scipy.signal.get_window("hann", n)`` and ``librosa.stft`` use."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def _yin(frames: np.ndarray, sr: int, fmin: float, fmax: float) -> tuple[np.ndarray, np.ndarray]:
    """YIN F0 and aperiodicity of each frame (de Cheveigné & Kawahara, JASA 111(4), 2002, steps 2-5).

    Args:
        frames: ``(T, N)`` frames of samples.

    Returns:
        ``f0`` ``(T,)`` Hz and ``aperiodicity`` ``(T,)``, the minimum of d' over lags in
        ``[floor(sr / fmax), ceil(sr / fmin)]``. Silent frames (d identically 0) get aperiodicity 1.
    """
    n = frames.shape[1]
    min_lag, max_lag = int(np.floor(sr / fmax)), int(np.ceil(sr / fmin))
    w = n - max_lag  # integration window: every lag compares the same W samples (eq. 6)
    x = frames.astype(np.float64)
    # r[t, tau] = sum_{j<W} x_j x_{j+tau}. j + tau <= N - 1 for tau <= max_lag, so an N-point FFT
    # cross-correlation does not wrap around.
    r = np.fft.irfft(np.conj(np.fft.rfft(x[:, :w], n)) * np.fft.rfft(x, n), n)[:, : max_lag + 1]  # (T, L+1)
    energy = np.concatenate([np.zeros((len(x), 1)), np.cumsum(x * x, axis=1)], axis=1)  # (T, N+1)
    lags = np.arange(max_lag + 1)
    # Eq. 6 expanded: d(tau) = sum_{j<W} x_j^2 + sum_{j<W} x_{j+tau}^2 - 2 r(tau) >= 0
    d = energy[:, w : w + 1] + (energy[:, lags + w] - energy[:, lags]) - 2 * r  # (T, max_lag+1)
    d = np.maximum(d, 0.0)  # FFT rounding can dip a hair below zero
    # Eq. 8: d'(tau) = d(tau) / mean(d(1..tau)), so d' starts near 1 and dips at multiples of the period.
    running_mean = np.cumsum(d[:, 1:], axis=1) / lags[1:]  # (T, max_lag): mean of d(1..tau)
    denom = running_mean[:, min_lag - 1 :]  # (T, K): tau = min_lag .. max_lag
    silent = denom <= 1e-20
    cmndf = np.where(silent, 1.0, d[:, min_lag:] / np.where(silent, 1.0, denom))  # (T, K)

    # Step 4: the first local minimum below the threshold (avoids octave-down errors), else the global minimum.
    is_trough = np.zeros_like(cmndf, dtype=bool)
    is_trough[:, 1:-1] = (cmndf[:, 1:-1] < cmndf[:, :-2]) & (cmndf[:, 1:-1] <= cmndf[:, 2:])
    dips = is_trough & (cmndf < _YIN_TROUGH_THRESHOLD)
    rows = np.arange(len(cmndf))
    k = np.where(dips.any(axis=1), dips.argmax(axis=1), cmndf.argmin(axis=1))  # (T,) index into lags
    # Step 5: parabolic interpolation through the three d' values around the chosen lag.
    inner = (k > 0) & (k < cmndf.shape[1] - 1)
    kc = np.clip(k, 1, cmndf.shape[1] - 2)
    left, mid, right = cmndf[rows, kc - 1], cmndf[rows, kc], cmndf[rows, kc + 1]
    curvature = left - 2 * mid + right
    ok = inner & (curvature > 1e-12)
    shift = np.where(ok, 0.5 * (left - right) / np.where(ok, curvature, 1.0), 0.0)
    period = min_lag + k + np.clip(shift, -1.0, 1.0)  # (T,) samples
    return sr / period, cmndf.min(axis=1)


def _index_seconds(index) -> tuple[np.ndarray, np.ndarray]:
    """Start and end times (s) as float arrays from openSMILE's ``(start, end)`` timedelta MultiIndex."""
    start = index.get_level_values("start").total_seconds().to_numpy()
    end = index.get_level_values("end").total_seconds().to_numpy()
    return start, end
