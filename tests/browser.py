"""A real headless Chromium for the dashboard's tests: Debian's ``chromium`` driven by its ``chromium-driver``.

Nothing is downloaded: the driver's path is given (so Selenium Manager never runs; SE_OFFLINE forbids it anyway),
the browser's own background traffic is off, and its profile is a fresh folder. ``make test`` installs both
packages when they are missing (the Makefile's ``chromium`` target).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

#: The window the pages are designed for, and a phone-sized one.
DESKTOP = (1280, 800)
NARROW = (390, 844)

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root without user namespaces
    "--disable-dev-shm-usage",  # a small /dev/shm in containers
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--password-store=basic",
)


def chromium_paths() -> tuple[str, str]:
    """The browser and its driver, or RuntimeError naming the packages."""
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError("chromium or chromedriver missing: apt-get install chromium chromium-driver")
    return browser, driver


class Browser:
    """One Chromium for a test module; screenshots go to ``artifacts``, downloads to ``downloads``."""

    def __init__(self, workdir: Path, artifacts: Path, log_dir: Path) -> None:
        os.environ.setdefault("SE_OFFLINE", "true")
        os.environ.setdefault("SE_AVOID_STATS", "true")
        browser, driver = chromium_paths()
        self.artifacts = artifacts
        self.downloads = workdir / "downloads"
        self.downloads.mkdir(parents=True, exist_ok=True)
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={workdir / 'profile'}")
        options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(self.downloads), "download.prompt_for_download": False}
        )
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(driver, log_output=str(log_dir / "chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(self.downloads)}
        )
        self.viewport = DESKTOP
        self.size(*DESKTOP)

    def size(self, width: int, height: int) -> None:
        """The viewport (not the window) at ``width`` x ``height`` CSS pixels."""
        self.viewport = (width, height)
        self._metrics(width, height)

    def _metrics(self, width: int, height: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
        )

    def open(self, url: str) -> None:
        self.driver.get(url)

    def wait(self, condition: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
        """Poll ``condition`` until it returns something truthy (a stale element counts as not yet)."""

        def check(_driver: Any) -> Any:
            try:
                return condition()
            except (StaleElementReferenceException, ElementClickInterceptedException, ElementNotInteractableException):
                return False  # redrawn, or covered for a moment (a toast): not yet

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(check)
        except TimeoutException:
            raise TimeoutException(f"{what} not met after {timeout}s; page text:\n{self.text()[:1500]}") from None

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def present(self, css: str, timeout: float = 15) -> WebElement:
        found: WebElement = self.wait(lambda: (self.find_all(css) or [None])[0], timeout, f"element {css!r}")
        return found

    def click(self, css: str, timeout: float = 15) -> None:
        self.wait(lambda: self._click(css), timeout, f"clickable {css!r}")

    def _click(self, css: str) -> bool:
        found = self.find_all(css)
        if not found or not found[0].is_displayed() or not found[0].is_enabled():
            return False
        found[0].click()
        return True

    def text(self, css: str = "body") -> str:
        """The first match's text ("" when none); the pages redraw live, so a node replaced mid-read is read again."""
        for _ in range(20):
            try:
                found = self.find_all(css)
                return found[0].text if found else ""
            except StaleElementReferenceException:
                continue
        raise RuntimeError(f"{css!r} kept being replaced while read")

    def attribute(self, css: str, name: str) -> str | None:
        """An attribute of the first match (None when none), read again if the node was replaced meanwhile."""
        for _ in range(20):
            try:
                found = self.find_all(css)
                return found[0].get_attribute(name) if found else None
            except StaleElementReferenceException:
                continue
        raise RuntimeError(f"{css!r} kept being replaced while read")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def screenshot(self, name: str, full: bool = False) -> Path:
        """A PNG of the viewport (``full``: the whole page) in the artifacts folder."""
        self.js("return document.fonts.ready")
        path = self.artifacts / f"{name}.png"
        width, height = self.viewport
        if full:  # a viewport as tall as the page, for one picture of it all
            self._metrics(width, max(height, int(self.js("return document.documentElement.scrollHeight"))))
        try:
            self.driver.save_screenshot(str(path))
        finally:
            if full:
                self._metrics(width, height)
        return path

    def console_errors(self) -> list[str]:
        """Script errors and Content-Security-Policy refusals logged since the last call.

        Error answers the page expects (a 401 before sign-in, a 404 for another account's batch) are logged by the
        browser as "Failed to load resource"; those are left out.
        """
        logs = self.driver.get_log("browser")
        return [
            e["message"] for e in logs if e.get("level") == "SEVERE" and "Failed to load resource" not in e["message"]
        ]

    def downloaded(self, name: str, timeout: float = 15) -> bytes:
        path = self.downloads / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and not (self.downloads / f"{name}.crdownload").exists():
                return path.read_bytes()
            time.sleep(0.05)
        raise TimeoutError(f"{name} not downloaded after {timeout}s: {sorted(os.listdir(self.downloads))}")

    def close(self) -> None:
        try:
            self.driver.quit()
        except WebDriverException:
            pass
