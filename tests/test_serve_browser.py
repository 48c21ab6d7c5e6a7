"""The viewer in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Skipped with a reason where no browser is installed; PNEUMOCAM_REQUIRE_BROWSER=1 (set by .ci/run, which installs
it) makes that a failure.
"""

import os
import shutil
import socket
import threading
import time

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        reason = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("PNEUMOCAM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PNEUMOCAM_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see content-policy refusals
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tiny_run):
    import uvicorn

    from pneumocam.serve.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(tiny_run / "train" / "model.pt", runs=tiny_run.parent, device="cpu")
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    for _ in range(200):
        if instance.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", tiny_run
    instance.should_exit = True
    thread.join(timeout=10)


def test_upload_a_film_see_its_overlay_move_the_slider_and_browse_the_run(browser, server, phantom_data):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, run = server
    film = sorted((phantom_data.images / "test" / "PNEUMONIA").glob("*.png"))[0]
    browser.get(url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#method option"))
    browser.find_element(By.ID, "file").send_keys(str(film))
    wait.until(
        lambda d: d.execute_script("const i = document.getElementById('heat'); return i.complete && i.naturalWidth > 0")
    )
    import httpx

    api = httpx.post(url + "/api/predict", files={"file": (film.name, film.read_bytes(), "image/png")}, timeout=60)
    assert browser.find_element(By.ID, "probability").text == f"{api.json()['probability']:.3f}"
    assert browser.find_element(By.ID, "prediction").text in ("NORMAL", "PNEUMONIA")
    assert browser.execute_script("return document.getElementById('film').naturalWidth") > 0
    slider = browser.find_element(By.ID, "opacity")
    browser.execute_script(
        "arguments[0].value = 25; arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", slider
    )
    assert browser.find_element(By.ID, "opacity-value").text == "0.25"
    assert browser.execute_script("return document.getElementById('heat').style.opacity") == "0.25"
    # The page works under its strict content policy: the lungs bar was sized through the DOM (no inline style).
    lungs_share = api.json()["regions"]["shares"]["lungs"]
    width = browser.execute_script("return document.querySelector('#regions .bar').style.width")
    assert width == f"{round(200 * lungs_share)}px"
    assert not browser.find_element(By.ID, "reliance").is_displayed()  # computed only when asked

    browser.find_element(By.ID, "ask-reliance").click()
    other = sorted((phantom_data.images / "test" / "NORMAL").glob("*.png"))[0]  # a new file fires the input's change
    browser.find_element(By.ID, "file").send_keys(str(other))
    wait.until(lambda d: d.find_element(By.ID, "reliance").is_displayed())
    asked = httpx.post(
        url + "/api/predict", files={"file": (other.name, other.read_bytes(), "image/png")}, data={"reliance": "true"}
    ).json()["reliance"]["probability"]
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#reliance-table div")]
    assert len(rows) == 5 and rows[1] == f"lungs removed (grey): p(PNEUMONIA) {asked['lungs_removed_fill']:.3f}"

    browser.get(url + "/runs")
    wait.until(lambda d: "films" in d.find_element(By.ID, "count").text)
    total = len(browser.find_elements(By.CSS_SELECTOR, "#table tbody tr"))
    browser.find_element(By.ID, "only-wrong").click()
    shown = browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
    import csv

    with open(run / "predictions.csv", newline="") as f:
        wrong = sum(r["label"] != r["pred"] for r in csv.DictReader(f))
    assert total > 0 and len(shown) == wrong  # the filter keeps exactly the misclassified films
    browser.find_element(By.ID, "only-wrong").click()
    browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")[0].click()
    wait.until(
        lambda d: d.execute_script("const i = document.getElementById('run-overlay'); return i.naturalWidth > 0")
    )
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not refused, refused  # nothing the pages load or run was blocked by their own policy
