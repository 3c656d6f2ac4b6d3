"""The demo page in headless Chromium: upload through the page, see the file listed, download it
through its signed link, delete it. Needs Debian's ``chromium`` and ``chromium-driver`` (installed
by scripts/test); a missing browser fails the test."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from keg_storage_ta import create_app

from .conftest import ServerThread

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install chromium chromium-driver (scripts/test does this)"
T = TypeVar("T")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[WebDriver, Path]]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is missing: {INSTALL}")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        yield driver, downloads
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], timeout: float = 30) -> T:
    return WebDriverWait(driver, timeout).until(condition)


def wait_for_file(path: Path, size: int, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size == size:
            return path.read_bytes()
        time.sleep(0.1)
    listing = sorted(p.name for p in path.parent.iterdir())
    raise AssertionError(f"{path.name} was not downloaded; the directory holds {listing}")


def test_upload_list_download_delete_in_a_real_browser(
    browser: tuple[WebDriver, Path], tmp_path: Path
) -> None:
    driver, downloads = browser
    app = create_app({"SECRET_KEY": "browser-test"}, instance_path=str(tmp_path / "instance"))
    store = tmp_path / "instance" / "storage"
    name = "résumé 2026.bin"
    source = tmp_path / "upload" / name
    source.parent.mkdir()
    content = os.urandom(3 * 1024 * 1024 + 7)
    source.write_bytes(content)

    with ServerThread(app) as server:
        driver.get(server.url + "/")
        assert driver.find_element(By.ID, "no-files").text == "No files yet."

        driver.find_element(By.ID, "file-input").send_keys(str(source))
        driver.find_element(By.ID, "upload-button").click()
        row = wait_for(
            driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-name="{name}"]')
        )[0]
        status = driver.find_element(By.ID, "upload-status").text
        assert status == f"Uploaded {name}."
        progress = driver.find_element(By.ID, "upload-progress").get_attribute("value")
        assert float(progress or 0) == 100
        assert (store / name).read_bytes() == content
        assert row.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text == str(len(content))

        link = row.find_element(By.CSS_SELECTOR, "a.download")
        assert link.text == name
        assert link.get_attribute("href").startswith(server.url + "/link?token=")
        link.click()
        assert wait_for_file(downloads / name, len(content)) == content

        row.find_element(By.CSS_SELECTOR, "button.delete").click()
        wait_for(driver, lambda d: d.find_elements(By.ID, "no-files"))
        assert driver.find_element(By.ID, "upload-status").text == f"Deleted {name}."
        assert not (store / name).exists()
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
