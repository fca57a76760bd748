"""``python -m dereverb.demo``: the page's processing function called directly, a ``gradio_client``
round trip against the served page, and a real headless Chromium uploading a file.

The server and browser tests need the ``demo`` extra (Gradio) and skip without it; the browser test
needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Set
``DEMO_SCREENSHOT=docs/img/demo.png`` to keep the browser's screenshot for the docs.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import fftconvolve

from dereverb.demo import DemoInputError, enhance_file
from dereverb.inference import load_model
from tests.conftest import harmonic_speechlike, toy_rir, write_wav

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _stereo_44k(path: Path, seconds: float = 1.5) -> Path:
    """A reverberant stereo clip at 44.1 kHz (the right channel quieter)."""
    x = fftconvolve(harmonic_speechlike(seconds, 44100), toy_rir(0.6, 44100))[: int(seconds * 44100)]
    x = (0.3 * x / np.abs(x).max()).astype(np.float32)
    return write_wav(path, np.stack([x, 0.5 * x]), 44100)


@pytest.fixture(scope="module")
def model():
    return load_model("pretrained", "cpu")


def test_enhance_file_keeps_rate_channels_length_and_shares_one_db_scale(model, tmp_path: Path) -> None:
    src = _stereo_44k(tmp_path / "in.wav")
    out, fig = enhance_file(str(src), 0.5, model=model, max_seconds=10, out_dir=tmp_path / "out")
    info, inp = sf.info(out), sf.info(src)
    assert (info.samplerate, info.channels, info.frames) == (inp.samplerate, inp.channels, inp.frames)
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 2 and images[0].get_clim() == images[1].get_clim()
    assert images[0].get_clim()[1] - images[0].get_clim()[0] == pytest.approx(80.0)
    assert fig.axes[0].get_xlabel() == "time (s)" and fig.axes[0].get_ylabel() == "frequency (kHz)"
    assert not np.array_equal(sf.read(out)[0], sf.read(src)[0])
    same, _ = enhance_file(str(src), 0.0, model=model, max_seconds=10, out_dir=tmp_path / "out")
    assert np.array_equal(sf.read(same, dtype="float32")[0], sf.read(src, dtype="float32")[0])


def test_enhance_file_refuses_with_one_clear_line(model, tmp_path: Path) -> None:
    src = _stereo_44k(tmp_path / "long.wav", seconds=2.0)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    for path, strength, cap, words in [(str(src), 1.0, 1.5, "2.0 s is longer than this page's 1.5 s limit"),
                                       (None, 1.0, 10, "upload or record"),
                                       (str(bad), 1.0, 10, "bad.wav")]:
        with pytest.raises(DemoInputError, match=words) as exc:
            enhance_file(path, strength, model=model, max_seconds=cap, out_dir=tmp_path / "out")
        assert "\n" not in str(exc.value) and str(tmp_path) not in str(exc.value)
    with pytest.raises(ValueError, match="strength must be between 0"):
        enhance_file(str(src), 1.5, model=model, max_seconds=10, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """``python -m dereverb.demo`` on 127.0.0.1 and a free port -> (url, examples folder)."""
    pytest.importorskip("gradio")
    tmp = tmp_path_factory.mktemp("demo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp / "server.log").open("w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dereverb.demo", "--port", str(port), "--device", "cpu",
                             "--examples-dir", str(tmp / "examples")], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode}: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"the demo did not answer on {url} within 300 s")
                time.sleep(1)
        yield url, tmp / "examples"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.mark.slow
def test_gradio_client_round_trip(server, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, examples = server
    assert sorted(p.name for p in examples.glob("*.wav")) == [
        "synthetic_t60_0.4s.wav", "synthetic_t60_0.7s.wav", "synthetic_t60_1.1s.wav"]
    assert all(sf.info(p).duration == 4.0 and np.abs(sf.read(p)[0]).max() > 0.05 for p in examples.glob("*.wav"))
    client = Client(url, verbose=False, download_files=str(tmp_path / "got"))
    src = _stereo_44k(tmp_path / "in.wav")
    audio, _plot = client.predict(handle_file(str(src)), 0.75, api_name="/dereverberate")
    info = sf.info(audio)
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, sf.info(src).frames)
    long = write_wav(tmp_path / "long.wav", np.full(61 * 8000, 0.1, np.float32), 8000)
    with pytest.raises(AppError, match="61.0 s is longer than this page's 60 s limit"):
        client.predict(handle_file(str(long)), 1.0, api_name="/dereverberate")


@pytest.mark.slow
def test_a_real_browser_uploads_a_file_and_gets_audio_back(server, tmp_path: Path) -> None:
    """Headless Chromium: load the page, upload, press the button, wait for the output audio and the
    spectrograms, and check that the screenshot is not blank."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    url, examples = server
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1100"):
        opts.add_argument(arg)
    browser = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=opts)
    try:
        browser.get(url)
        wait = WebDriverWait(browser, 240)
        upload = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#reverberant input[type=file]"))[0]
        upload.send_keys(str(examples / "synthetic_t60_1.1s.wav"))
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#reverberant a[download]"))
        browser.find_element(By.CSS_SELECTOR, "#run").click()
        link = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#dereverberated a[download]"))[0]
        assert link.get_attribute("download") == "synthetic_t60_1.1s_dereverberated.wav"
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#spectrograms img"))
        time.sleep(1)  # let the waveform and the image paint
        shot = tmp_path / "demo.png"
        browser.save_screenshot(str(shot))
        plot = np.asarray(Image.open(io.BytesIO(browser.find_element(By.CSS_SELECTOR, "#spectrograms").screenshot_as_png)).convert("L"))
    finally:
        browser.quit()
    page = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert page.std() > 10 and plot.std() > 30  # a blank or white page is ~0
    if target := os.environ.get("DEMO_SCREENSHOT"):
        Image.open(shot).convert("RGB").save(target, optimize=True)
