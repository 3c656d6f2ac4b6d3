"""The demo page in headless Chromium at 1280, 390 and 360 px: upload through the page, see the
file listed with a human size, download it through its signed link, delete it after confirming;
refused names explained in the status with the bar reset; the status and the bar inside the
viewport. Screenshots (PNG) are saved in the test's tmp_path. Needs Debian's ``chromium`` and
``chromium-driver`` (installed by scripts/test); a missing browser fails the test."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar, cast

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
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


def choose_file(driver: WebDriver, name: str, content: str) -> None:
    """Put a file the local disk cannot hold (a 400-character name, ``..``) into the file input,
    as a picker on another system would: through the browser's own DataTransfer."""
    driver.execute_script(
        """
        const transfer = new DataTransfer();
        transfer.items.add(new File([arguments[1]], arguments[0], {type: "text/plain"}));
        document.getElementById("file-input").files = transfer.files;
        """,
        name,
        content,
    )


def upload(driver: WebDriver) -> str:
    """Click Upload and wait for the outcome; the status line's text."""
    before = driver.find_element(By.ID, "upload-status").text
    driver.find_element(By.ID, "upload-button").click()

    def settled(d: WebDriver) -> str | None:
        text = d.find_element(By.ID, "upload-status").text
        return text if text != before and not text.startswith("Uploading") else None

    return wait_for(driver, settled)


def progress_value(driver: WebDriver) -> float:
    return float(driver.find_element(By.ID, "upload-progress").get_attribute("value") or 0)


def box(driver: WebDriver, element_id: str) -> dict[str, float]:
    return cast(
        dict[str, float],
        driver.execute_script(
            """
            const r = document.getElementById(arguments[0]).getBoundingClientRect();
            return {left: r.left, right: r.right, width: r.width, height: r.height,
                    viewport: document.documentElement.clientWidth,
                    page: document.documentElement.scrollWidth};
            """,
            element_id,
        ),
    )


def assert_fits(driver: WebDriver, width: int) -> None:
    """The status line and the progress bar are visible and inside the viewport; nothing makes
    the page scroll sideways; on a phone the bar takes the whole width of the controls."""
    for element_id in ("upload-status", "upload-progress"):
        assert driver.find_element(By.ID, element_id).is_displayed(), element_id
        rect = box(driver, element_id)
        assert rect["width"] > 0 and rect["height"] > 0, (element_id, rect)
        assert rect["left"] >= 0 and rect["right"] <= rect["viewport"], (element_id, rect)
        assert rect["page"] <= rect["viewport"], (element_id, rect)
    assert box(driver, "upload-progress")["viewport"] == width
    if width < 640:
        assert box(driver, "upload-progress")["width"] >= box(driver, "upload")["width"] - 1


def row_of(driver: WebDriver, name: str) -> list[WebElement]:
    """The listing's row of ``name`` (none or one), found in one step: the script replaces the
    table body while it refreshes."""
    return cast(
        list[WebElement],
        driver.execute_script(
            "return [...document.querySelectorAll('#files tbody tr')]"
            ".filter((row) => row.dataset.name === arguments[0]);",
            name,
        ),
    )


@pytest.mark.parametrize("width", [1280, 390, 360])
def test_the_demo_in_a_real_browser(
    browser: tuple[WebDriver, Path], tmp_path: Path, width: int
) -> None:
    driver, downloads = browser
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 640},
    )
    app = create_app({"SECRET_KEY": "browser-test"}, instance_path=str(tmp_path / "instance"))
    page = DemoPage(driver, tmp_path / "instance" / "storage", tmp_path, width)
    name = "résumé 2026.bin"
    source = tmp_path / "upload" / name
    source.parent.mkdir()
    content = os.urandom(3 * 1024 * 1024 + 7)
    source.write_bytes(content)

    with ServerThread(app) as server:
        driver.get(server.url + "/")
        assert driver.find_element(By.ID, "no-files").text == "No files yet."
        assert_fits(driver, width)
        upload_and_download(page, server.url, source, downloads)
        upload_odd_names(page, tmp_path / "upload")
        refused_names(page)
        delete_after_confirming(page, server.url, name, content)
        assert_no_console_errors(driver)


class DemoPage:
    """The browser on the demo page, the store behind it, where screenshots go, the width."""

    def __init__(self, driver: WebDriver, store: Path, shots: Path, width: int) -> None:
        self.driver = driver
        self.store = store
        self.shots = shots
        self.width = width

    def screenshot(self, label: str) -> None:
        self.driver.save_screenshot(str(self.shots / f"demo-{self.width}-{label}.png"))


def upload_and_download(page: DemoPage, url: str, source: Path, downloads: Path) -> None:
    """The happy path: upload, listed with a human size, downloaded through its link."""
    driver, name, content = page.driver, source.name, source.read_bytes()
    driver.find_element(By.ID, "file-input").send_keys(str(source))
    assert upload(driver) == f"Uploaded {name}."
    row = wait_for(driver, lambda d: row_of(d, name))[0]
    assert progress_value(driver) == 100
    assert (page.store / name).read_bytes() == content
    size = row.find_element(By.CSS_SELECTOR, "td.size")
    assert (size.text, size.get_attribute("title")) == ("3.1 MB", "3,145,735 bytes")
    link = row.find_element(By.CSS_SELECTOR, "a.download")
    assert link.text == name
    assert link.get_attribute("href").startswith(url + "/link?token=")
    link.click()
    assert wait_for_file(downloads / name, len(content)) == content


def upload_odd_names(page: DemoPage, folder: Path) -> None:
    """A backslash is part of the name, not a folder separator; the longest name LocalFS keeps
    is listed without widening the page."""
    driver, store = page.driver, page.store
    backslash = folder / "back\\slash.txt"
    backslash.write_bytes(b"a backslash is a character")
    driver.find_element(By.ID, "file-input").send_keys(str(backslash))
    assert upload(driver) == "Uploaded back\\slash.txt."
    wait_for(driver, lambda d: row_of(d, "back\\slash.txt"))
    assert (store / "back\\slash.txt").read_bytes() == b"a backslash is a character"
    assert not (store / "slash.txt").exists()

    longest = "b" * 251 + ".txt"
    choose_file(driver, longest, "longest")
    assert upload(driver) == f"Uploaded {'b' * 40}…{'b' * 11}.txt."
    wait_for(driver, lambda d: row_of(d, longest))
    assert (store / longest).read_bytes() == b"longest"
    assert_fits(driver, page.width)


def refused_names(page: DemoPage) -> None:
    """Names the store refuses: a sentence in the status, the bar back at zero (also when the
    refusal comes after the bytes went up, because a folder holds the name)."""
    driver, store = page.driver, page.store
    long_name = "a" * 396 + ".txt"
    choose_file(driver, long_name, "long")
    assert upload(driver) == (
        f"Could not upload {'a' * 40}…{'a' * 11}.txt. This file name is not allowed: it is "
        "too long (a name can have at most 255 bytes)."
    )
    assert progress_value(driver) == 0
    assert "error" in driver.find_element(By.ID, "upload-status").get_attribute("class")
    assert_fits(driver, page.width)
    page.screenshot("long-name")

    choose_file(driver, "..", "dots")
    assert upload(driver) == (
        'Could not upload ... This file name is not allowed: "." and ".." cannot be used as names.'
    )
    assert progress_value(driver) == 0

    (store / "docs").mkdir()
    (store / "docs" / "inside.txt").write_bytes(b"inside")
    choose_file(driver, "docs", "x" * 100_000)
    assert upload(driver) == "Could not upload docs. A folder already has this name."
    assert progress_value(driver) == 0
    assert (store / "docs" / "inside.txt").read_bytes() == b"inside"
    assert_fits(driver, page.width)


def delete_after_confirming(page: DemoPage, url: str, name: str, content: bytes) -> None:
    """Delete asks first: dismissing keeps the file, accepting deletes it."""
    driver, store = page.driver, page.store
    driver.get(url + "/")
    row_of(driver, name)[0].find_element(By.CSS_SELECTOR, "button.delete").click()
    alert = wait_for(driver, expected_conditions.alert_is_present())
    assert alert.text == f"Delete {name}? This cannot be undone."
    alert.dismiss()
    assert wait_for(driver, lambda d: d.find_element(By.ID, "upload-status").text) == (
        f"Kept {name}."
    )
    assert (store / name).read_bytes() == content
    assert row_of(driver, name)
    page.screenshot("list")

    row_of(driver, name)[0].find_element(By.CSS_SELECTOR, "button.delete").click()
    wait_for(driver, expected_conditions.alert_is_present()).accept()
    wait_for(driver, lambda d: not row_of(d, name))
    assert driver.find_element(By.ID, "upload-status").text == f"Deleted {name}."
    assert not (store / name).exists()
    assert_fits(driver, page.width)


def assert_no_console_errors(driver: WebDriver) -> None:
    """Nothing but the refused uploads' HTTP errors in the browser's console."""
    errors = [
        entry
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
        and "the server responded with a status of" not in entry["message"]
    ]
    assert errors == []
