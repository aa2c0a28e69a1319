"""The page of `emodistill serve` in a real browser: Debian's headless Chromium driven by Selenium through the
system chromedriver (nothing downloaded), against the real service on loopback. Uploads a video, reads the
score, labels and GD-Unit graph the page draws, plays a timeline segment, and runs live mode on Chromium's
fake camera and microphone fed from a generated video and speech file. Screenshots go to
``$EMODISTILL_TEST_ARTIFACTS`` (default ``test-artifacts/`` at the repository root)."""

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


def _browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "Debian's chromium and chromium-driver are not installed (scripts/test-browser.sh installs them)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


def _chrome(*flags: str):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _browser_paths()
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


def _screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def test_upload_shows_score_labels_heads_and_edge_graph(page_service, media_dir):
    clip = media_dir / "videos" / "clip6.mp4"
    status, api, _ = post_video(page_service.url + "/v1/predict", clip, TEXT)
    assert status == 200
    driver = _chrome()
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
        assert _screenshot(driver, "serve-upload.png").stat().st_size > 10_000
        logs = driver.get_log("browser")  # the page's own errors (the first, token-less call's 401 is expected)
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
        _open(driver, page_service.url)
        driver.find_element(By.ID, "transcript").send_keys(TEXT)
        driver.find_element(By.CSS_SELECTOR, "#window-s option[value='3']").click()
        driver.find_element(By.ID, "camera").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "live").is_enabled())
        driver.find_element(By.ID, "live").click()
        WebDriverWait(driver, 120).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#live-chart circle.live-point")) >= 2)
        driver.find_element(By.ID, "live").click()  # stop
        status = driver.find_element(By.ID, "live-status").text
        assert "window(s) scored" in status
        score = float(driver.find_element(By.ID, "score").get_attribute("data-score"))
        assert -3.5 < score < 3.5
        _screenshot(driver, "serve-live.png")
    finally:
        driver.quit()
