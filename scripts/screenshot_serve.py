"""Screenshots of both viewer pages after real interaction, in headless Chromium (Selenium).

    python scripts/screenshot_serve.py --checkpoint RUN/train/model.pt --runs RUNS_DIR --film FILM.jpeg --out DIR

Starts the server on a free local port, uploads FILM on "Explain a film" (explain.png), then opens the first run
under RUNS_DIR, filters its misclassified films and opens one beside its overlay (runs.png). Needs Debian's
chromium and chromium-driver.
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
    parser.add_argument("--film", required=True)
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(args.checkpoint, runs=Path(args.runs))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    wait = WebDriverWait(driver, 300)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#method option"))
        driver.find_element(By.ID, "file").send_keys(str(Path(args.film).resolve()))
        wait.until(lambda d: d.execute_script("return document.getElementById('heat').naturalWidth > 0"))
        driver.save_screenshot(str(args.out / "explain.png"))
        driver.get(f"http://127.0.0.1:{port}/runs")
        wait.until(lambda d: "films" in d.find_element(By.ID, "count").text)
        driver.find_element(By.ID, "only-wrong").click()
        rows = driver.find_elements(By.CSS_SELECTOR, "#table tbody tr")
        if rows:
            rows[0].click()
            wait.until(lambda d: d.execute_script("return document.getElementById('run-overlay').naturalWidth > 0"))
        driver.save_screenshot(str(args.out / "runs.png"))
    finally:
        driver.quit()
        server.should_exit = True
    print(f"screenshots: {args.out / 'explain.png'}, {args.out / 'runs.png'}")


if __name__ == "__main__":
    main()
