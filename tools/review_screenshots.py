"""Screenshots of the review page for docs/: the worklist of a `msaic demo` run, and one record's
ECG opened from it, taken in headless Chromium (Debian's `chromium` and `chromium-driver` through
Selenium; nothing is downloaded). The page is served by `msaic review`'s own server, in-process,
and nothing is adjudicated. The PNGs are reduced to a 128-colour palette to stay small.

Usage (the demo's store has the demo's fixed pseudonym key, which the review server asks for):
    MSAIC_PSEUDONYM_KEY=msaic-demo python tools/review_screenshots.py --workdir demo_out [--docs docs]
Writes DOCS/review_worklist.png and DOCS/review_ecg.png.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from flows.review import Review, serve
from tasks.settings import Settings

WAIT_S = 60
WINDOW = (1600, 1000)
PALETTE_COLOURS = 128  # keeps each PNG well under 300 KB with the ECG grid legible


def browser() -> webdriver.Chrome:
    """Headless Debian Chromium through the system chromedriver."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager fetches nothing
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def save_png(driver: webdriver.Chrome, path: Path) -> int:
    """The window as a palette PNG; returns its size in bytes."""
    with Image.open(io.BytesIO(driver.get_screenshot_as_png())) as shot:
        shot.convert("RGB").quantize(PALETTE_COLOURS).save(path, optimize=True)
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("demo_out"), help="a `msaic demo --workdir` folder")
    ap.add_argument("--docs", type=Path, default=Path("docs"), help="where the PNGs go")
    args = ap.parse_args()
    review = Review(args.workdir / "screening", args.workdir / "store", "screenshots", Settings())
    server = serve(review, 0)
    driver = browser()
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
        WebDriverWait(driver, WAIT_S).until(
            lambda d: d.execute_script("return window.msaic && window.msaic.rows()")
        )
        sizes = {"review_worklist.png": save_png(driver, args.docs / "review_worklist.png")}
        driver.find_element(By.TAG_NAME, "h1").click()  # focus on the page, not on a control
        ActionChains(driver).send_keys(Keys.ENTER).perform()  # the first row's ECG
        WebDriverWait(driver, WAIT_S).until(
            lambda d: d.execute_script(
                "const i=document.getElementById('ecg'); return i.complete && i.naturalWidth"
            )
        )
        sizes["review_ecg.png"] = save_png(driver, args.docs / "review_ecg.png")
    finally:
        driver.quit()
        server.shutdown()
    for name, size in sizes.items():
        print(f"{args.docs / name}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
