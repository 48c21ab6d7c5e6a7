"""Screenshots of both viewer pages after real interaction, in headless Chromium (Selenium).

    python scripts/screenshot_serve.py --checkpoint RUN/train/model.pt --runs RUNS_DIR --data-root DATA \
        --film FILM.jpeg --out DIR

Starts the server on a free local port; at 1280x800 uploads FILM on "Explain a film" with the reliance check asked,
zooms in two wheel notches and narrows the window (explain.png); then opens the first run under RUNS_DIR, filters
its misclassified films, opens the first and steps to the next with "j" (runs.png); then both pages again in a
420 px wide window (explain-narrow.png, runs-narrow.png). Needs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path


def main() -> None:
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from pneumocam.serve.app import create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--runs", required=True)
    parser.add_argument("--data-root", action="append", default=[], help="A folder the runs' films lie under.")
    parser.add_argument("--film", required=True)
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(args.checkpoint, runs=Path(args.runs), data_roots=tuple(Path(d) for d in args.data_root))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    wait = WebDriverWait(driver, 300)
    viewer_ready = "return document.getElementById('viewer').dataset.zoom !== undefined"
    shots = []

    def viewport(width: int, height: int) -> None:  # the page's own size, without the window's frame
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def shot(name: str) -> None:
        driver.save_screenshot(str(args.out / name))
        shots.append(str(args.out / name))

    def explain_page() -> None:
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#method option"))
        driver.find_element(By.ID, "ask-reliance").click()
        driver.find_element(By.ID, "file").send_keys(str(Path(args.film).resolve()))
        wait.until(lambda d: d.execute_script(viewer_ready) and d.find_element(By.ID, "probability").text)

    def runs_page() -> None:
        driver.get(f"http://127.0.0.1:{port}/runs")
        wait.until(lambda d: "films" in d.find_element(By.ID, "count").text)
        driver.find_element(By.ID, "only-wrong").click()
        rows = driver.find_elements(By.CSS_SELECTOR, "#table tbody tr")
        if rows:
            rows[0].click()
            wait.until(lambda d: d.execute_script(viewer_ready))
            driver.find_element(By.TAG_NAME, "body").send_keys("j")
            time.sleep(1.0)  # the next case's film arrives

    try:
        viewport(1280, 800)
        explain_page()
        for _ in range(2):  # two wheel notches on the overlay, about its centre
            driver.execute_script(
                "const c = document.getElementById('overlay-canvas'), b = c.getBoundingClientRect();"
                "c.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, clientX: b.left + b.width / 2,"
                " clientY: b.top + b.height / 2, bubbles: true, cancelable: true}))"
            )
        shot("explain.png")
        runs_page()
        shot("runs.png")
        viewport(420, 800)
        explain_page()
        shot("explain-narrow.png")
        runs_page()
        shot("runs-narrow.png")
    finally:
        driver.quit()
        server.should_exit = True
    print("screenshots: " + ", ".join(shots))


if __name__ == "__main__":
    main()
