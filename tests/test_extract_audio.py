"""Acoustic features: physical checks on sines, noise, silence and espeak speech, for both backends."""

from __future__ import annotations

import time

import numpy as np
import pytest
from media import speech

from emodistill.extract.audio import FLOOR_DB, AudioConfig, AudioFeatureExtractor
from emodistill.extract.errors import ExtractError

librosa = pytest.importorskip("librosa")

SR = 16000
HOP = 512
SENTENCE = "Hello there. I am absolutely thrilled about this wonderful day."
EULER_GAMMA = 0.5772156649015329


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def ext() -> AudioFeatureExtractor:
    extractor = AudioFeatureExtractor(AudioConfig())
    extractor(tone(220.0, 0.2))  # warm-up: librosa's numba functions load on first use
    return extractor


def columns(ext: AudioFeatureExtractor, feats: np.ndarray) -> dict[str, np.ndarray]:
    return {name: feats[:, i] for i, name in enumerate(ext.feature_names)}


def test_config_round_trip_and_validation():
    cfg = AudioConfig(n_mfcc=13, fmax=400.0)
    d = cfg.to_dict()
    assert all(isinstance(v, (str, int, float, bool)) for v in d.values())
    assert AudioConfig(**d) == cfg
    with pytest.raises(ValueError, match="backend"):
        AudioConfig(backend="praat")
    with pytest.raises(ValueError, match="fmin"):
        AudioConfig(fmin=20.0)  # a 50 ms period: two do not fit in a 64 ms frame
    with pytest.raises(ValueError, match="n_fft"):
        AudioConfig(n_fft=1023)


def test_names_shape_and_frame_grid(ext):
    names = ext.feature_names
    assert len(names) == 29 and len(set(names)) == 29
    assert names[:2] == ["mfcc_0", "mfcc_1"] and "f0_hz" in names and "voiced" in names
    for n_samples in (1, 511, 512, 513, 16000, 16001):
        feats = ext(np.full(n_samples, 0.1, np.float32))
        assert feats.shape == (1 + n_samples // HOP, len(names)) and feats.dtype == np.float32
    assert ext.frame_rate == pytest.approx(SR / HOP)
    times = ext.frame_times(5)
    assert times[0] == 0.0 and np.allclose(np.diff(times), HOP / SR)


def test_pure_tone_physical_values(ext):
    f0, amp = 220.0, 0.5
    c = columns(ext, ext(tone(f0, amp=amp)))
    inner = slice(2, -2)  # edge frames overlap the zero padding
    assert np.all(c["voiced"][inner] == 1.0)
    # 2 % is the brief; 0.1 % checks the parabolic refinement (an integer lag alone is 0.4 % off at 220 Hz)
    assert np.all(np.abs(c["f0_hz"][inner] / f0 - 1) < 0.001)
    assert np.all(c["aperiodicity"][inner] < 0.05)
    assert np.allclose(c["rms_db"][inner], 20 * np.log10(amp / np.sqrt(2)), atol=0.1)  # -9.03 dB
    assert np.allclose(c["zcr"][inner], 2 * f0 / SR, rtol=0.05)  # two crossings per period
    assert np.allclose(c["spectral_centroid_hz"][inner], f0, rtol=0.02)
    assert np.all(np.abs(c["spectral_rolloff_hz"][inner] - f0) <= 2 * SR / 1024)  # within two FFT bins
    assert np.all(c["spectral_bandwidth_hz"][inner] < 50.0)  # only the window's main lobe
    assert np.all(c["spectral_flatness"][inner] < 1e-3)


@pytest.mark.parametrize("f0", [70.0, 110.0, 330.0, 480.0])
def test_f0_of_harmonic_and_missing_fundamental_tones(ext, f0):
    t = np.arange(SR) / SR
    sawtooth = (0.3 * (2 * ((t * f0) % 1.0) - 1)).astype(np.float32)  # all harmonics, 1/k amplitudes
    missing = sum(0.2 * np.sin(2 * np.pi * k * f0 * t) for k in range(2, 6)).astype(np.float32)  # no energy at f0
    for wav in (sawtooth, missing):
        c = columns(ext, ext(wav))
        assert np.all(c["voiced"][2:-2] == 1.0)
        assert np.all(np.abs(c["f0_hz"][2:-2] / f0 - 1) < 0.02)  # no octave errors


def test_gain_changes_energy_only(ext):
    wav = speech(SENTENCE)
    a, b = columns(ext, ext(wav)), columns(ext, ext(0.5 * wav))
    loud = a["rms_db"] > -40
    assert np.allclose(a["rms_db"][loud] - b["rms_db"][loud], 20 * np.log10(2), atol=1e-3)  # 6.02 dB
    for name in ("f0_hz", "voiced", "zcr", "spectral_centroid_hz", "spectral_rolloff_hz"):
        assert np.allclose(a[name][loud], b[name][loud], rtol=1e-3, atol=1e-3), name


def test_silence_is_finite_unvoiced_and_at_the_floor(ext):
    feats = ext(np.zeros(SR, np.float32))
    c = columns(ext, feats)
    assert np.isfinite(feats).all()
    assert np.all(c["rms_db"] == FLOOR_DB)
    assert np.all(c["voiced"] == 0) and np.all(c["f0_hz"] == 0) and np.all(c["aperiodicity"] == 1)
    assert np.all(c["zcr"] == 0)


def test_periodic_hum_below_the_silence_gate_is_not_voiced(ext):
    quiet = tone(220.0, amp=10 ** (-70 / 20) * np.sqrt(2))  # -70 dB RMS, under silence_db = -60
    c = columns(ext, ext(quiet))
    assert np.allclose(c["rms_db"][2:-2], -70.0, atol=0.1)
    assert np.all(c["voiced"] == 0) and np.all(c["f0_hz"] == 0) and np.all(c["aperiodicity"] == 1)


def test_white_noise_statistics(ext):
    noise = (0.1 * np.random.default_rng(0).standard_normal(5 * SR)).astype(np.float32)
    c = columns(ext, ext(noise))
    mid = slice(2, -2)
    assert np.all(c["voiced"] == 0)
    assert np.median(c["aperiodicity"][mid]) > 0.7
    assert np.median(c["rms_db"][mid]) == pytest.approx(-20.0, abs=0.3)
    assert np.median(c["zcr"][mid]) == pytest.approx(0.5, abs=0.02)  # independent signs flip half the time
    assert np.median(c["spectral_centroid_hz"][mid]) == pytest.approx(SR / 4, rel=0.03)  # flat spectrum
    assert np.median(c["spectral_rolloff_hz"][mid]) == pytest.approx(0.85 * SR / 2, rel=0.03)
    # Flatness of exponentially distributed power: exp(E[log P]) / E[P] = exp(-gamma) ~= 0.561
    assert np.median(c["spectral_flatness"][mid]) == pytest.approx(np.exp(-EULER_GAMMA), abs=0.03)


def test_speech_voicing_and_pitch_agree_with_pyin(ext):
    wav = speech(SENTENCE)
    feats = ext(wav)
    c = columns(ext, feats)
    assert feats.shape == (1 + len(wav) // HOP, len(ext.feature_names))
    assert np.isfinite(feats).all()
    assert 0.2 <= c["voiced"].mean() <= 0.95
    # An independent pitch tracker (probabilistic YIN with HMM smoothing) on the same frame grid.
    f0_ref, voiced_ref, _ = librosa.pyin(wav, fmin=65, fmax=500, sr=SR, frame_length=1024, hop_length=HOP)
    both = voiced_ref & (c["voiced"] == 1)
    assert both.sum() >= 0.5 * (c["voiced"] == 1).sum()
    assert np.median(np.abs(c["f0_hz"][both] / f0_ref[both] - 1)) < 0.02


def test_bad_input_is_rejected(ext):
    with pytest.raises(ValueError, match="mono"):
        ext(np.zeros((2, 100), np.float32))
    with pytest.raises(ExtractError, match="no samples"):
        ext(np.zeros(0, np.float32))
    with pytest.raises(ExtractError, match="NaN"):
        ext(np.array([0.0, np.nan, 0.1], np.float32))


def test_ten_second_clip_is_fast(ext):
    wav = np.tile(speech(SENTENCE), 3)[: 10 * SR]
    ext(wav)
    start = time.perf_counter()
    ext(wav)
    # ~0.03 s on one core; the margin absorbs a busy shared machine
    assert time.perf_counter() - start < 0.5


def test_opensmile_egemaps_lld():
    pytest.importorskip("opensmile")
    ext = AudioFeatureExtractor(AudioConfig(backend="opensmile"))
    seconds = 2.0
    feats = ext(tone(220.0, seconds))
    names = ext.feature_names
    assert feats.shape[1] == 25 == len(names)
    assert abs(feats.shape[0] - seconds * 100) <= 6  # 10 ms hop, minus the last window's length
    assert np.isfinite(feats).all() and feats.dtype == np.float32
    assert ext.frame_rate == pytest.approx(100.0)
    assert np.allclose(np.diff(ext.frame_times(4)), 0.01)
    assert {"Loudness_sma3", "F0semitoneFrom27.5Hz_sma3nz", "HNRdBACF_sma3nz", "mfcc1_sma3"} <= set(names)
    # Column alignment: 220 Hz is 12 * log2(220 / 27.5) = 36 semitones above 27.5 Hz.
    semitones = feats[10:-10, names.index("F0semitoneFrom27.5Hz_sma3nz")]
    assert np.median(semitones) == pytest.approx(36.0, abs=0.5)
    assert np.isfinite(ext(np.zeros(SR, np.float32))).all()
    assert np.isfinite(ext(np.zeros(50, np.float32))).all()  # shorter than one window: NaN -> 0


def test_opensmile_compare_lld():
    pytest.importorskip("opensmile")
    ext = AudioFeatureExtractor(AudioConfig(backend="opensmile", opensmile_feature_set="ComParE_2016"))
    feats = ext(speech(SENTENCE))
    assert feats.shape[1] == 65 == len(ext.feature_names) and np.isfinite(feats).all()
    with pytest.raises(ValueError, match="opensmile_feature_set"):
        AudioFeatureExtractor(AudioConfig(backend="opensmile", opensmile_feature_set="eGeMAPSv99"))
