import numpy as np
import pytest
import soundfile as sf
import torch

from dereverb.signals.audio import (
    AUDIO_EXTENSIONS,
    AudioError,
    find_audio_files,
    load,
    read_audio,
    readable_formats,
    resample,
    to_mono,
    write_audio,
)


def test_read_write_roundtrip_shapes_and_dtype(tmp_path):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 1000)).astype(np.float32)
    p = write_audio(tmp_path / "a.wav", x, 16000)
    y, sr = read_audio(p)
    assert sr == 16000 and y.shape == (2, 1000) and y.dtype == np.float32
    np.testing.assert_array_equal(x, y)  # float WAV is lossless
    assert to_mono(y).shape == (1000,)
    np.testing.assert_allclose(to_mono(y), x.mean(0), atol=1e-7)


def test_write_is_atomic_and_leaves_no_temp(tmp_path):
    write_audio(tmp_path / "o.wav", np.zeros(10, np.float32), 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"]
    with pytest.raises(AudioError, match="NaN"):
        write_audio(tmp_path / "bad.wav", np.array([np.nan], np.float32), 16000)
    assert not (tmp_path / "bad.wav").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"]


def test_flac_and_ogg_read(tmp_path):
    x = (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    sf.write(tmp_path / "a.flac", x, 8000)
    sf.write(tmp_path / "a.ogg", x, 8000)
    for name in ("a.flac", "a.ogg"):
        y, sr = read_audio(tmp_path / name)
        assert sr == 8000 and y.shape[0] == 1 and abs(y.shape[1] - 8000) < 10
    assert [p.name for p in find_audio_files(tmp_path)] == ["a.flac", "a.ogg"]


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("this is not audio\n" * 20), "cannot decode"),
        (lambda p: sf.write(p, np.zeros((0,), np.float32), 16000, subtype="FLOAT"), "no samples"),
        (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2], np.float32), 16000, subtype="FLOAT"), "NaN"),
    ],
    ids=["missing", "empty", "text", "no-samples", "nan"],
)
def test_bad_files_raise_audioerror_naming_file(tmp_path, make, match):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=match) as ei:
        read_audio(p)
    assert str(p) in str(ei.value)


def test_truncated_wav(tmp_path):
    p = tmp_path / "t.wav"
    sf.write(p, np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1, 16000, subtype="PCM_16")
    data = p.read_bytes()
    p.write_bytes(data[:30])  # header cut mid-way
    with pytest.raises(AudioError, match="t.wav"):
        read_audio(p)


def test_silent_rejected_only_when_asked(tmp_path):
    p = tmp_path / "z.wav"
    sf.write(p, np.zeros(100, np.float32), 16000)
    assert read_audio(p)[0].shape == (1, 100)
    with pytest.raises(AudioError, match="silent"):
        read_audio(p, allow_silent=False)


def test_resample_numpy_and_torch_and_load(tmp_path):
    x = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
    y = resample(x, 44100, 16000)
    assert isinstance(y, np.ndarray) and y.shape == (16000,)
    # a 440 Hz tone stays at 440 Hz
    f = np.fft.rfftfreq(16000, 1 / 16000)[np.argmax(np.abs(np.fft.rfft(y)))]
    assert abs(f - 440) <= 1
    t = resample(torch.from_numpy(x)[None], 44100, 16000)
    assert isinstance(t, torch.Tensor) and t.shape == (1, 16000)
    sf.write(tmp_path / "s.wav", np.stack([x, x], 1), 44100)
    assert load(tmp_path / "s.wav", 16000).shape == (16000,)
    assert load(tmp_path / "s.wav", 16000, mono=False).shape == (2, 16000)


# ---------------------------------------------------------------------------- MP3 and the format list
def _tone_mp3(path, seconds: float = 2.0, sr: int = 16000):
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="MP3")
    return path


def _corrupt_mp3(path, tmp_path):
    """A real MP3 whose frames after the first few hundred bytes are random: libmpg123 gives up."""
    b = bytearray(_tone_mp3(tmp_path / "src.mp3").read_bytes())
    b[400:-200] = np.random.default_rng(0).integers(0, 256, len(b) - 600, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(b))
    return path


def test_real_mp3_decodes_and_is_found_in_folders(tmp_path):
    p = _tone_mp3(tmp_path / "speech.mp3")
    x, sr = read_audio(p)
    assert sr == 16000 and x.shape[0] == 1 and abs(x.shape[1] - 32000) <= 2400
    assert 0.15 < float(np.sqrt(np.mean(x**2))) < 0.25  # a 0.3-peak sine has RMS 0.21
    assert find_audio_files(tmp_path) == [p]
    assert ".mp3" in AUDIO_EXTENSIONS


def test_readable_formats_come_from_soundfile():
    formats = readable_formats()
    assert {"WAV", "FLAC", "OGG", "MP3"} <= set(formats)
    assert set(formats) <= set(sf.available_formats())


def test_undecodable_file_names_the_formats_this_build_reads(tmp_path):
    p = tmp_path / "notes.m4a"
    p.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(AudioError) as info:
        read_audio(p)
    msg = str(info.value)
    assert str(p) in msg and "MP3" in msg and "FLAC" in msg and "ffmpeg" in msg
    assert "does not exist" not in msg  # libsndfile's misleading wording is replaced
    assert "\n" not in msg


def test_corrupt_mp3_gives_one_line_and_nothing_from_libmpg123(tmp_path):
    """libmpg123 writes 'Note: Illegal Audio-MPEG-Header ...' to file descriptor 2 itself; the
    subprocess shows that only our one line reaches the terminal."""
    import subprocess
    import sys

    bad = _corrupt_mp3(tmp_path / "broken.mp3", tmp_path)
    code = (
        "import sys\nfrom dereverb.signals.audio import read_audio, AudioError\n"
        f"try:\n    read_audio({str(bad)!r})\nexcept AudioError as e:\n    print('error:', e, file=sys.stderr)\n"
    )
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "broken.mp3" in lines[0] and "corrupt" in lines[0] and "Illegal" not in err
