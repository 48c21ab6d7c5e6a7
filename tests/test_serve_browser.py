"""The viewer in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Skipped with a reason where no browser is installed; PNEUMOCAM_REQUIRE_BROWSER=1 (set by .ci/run, which installs
it) makes that a failure.
"""

import json
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
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
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tiny_run, tiny_data):
    import uvicorn

    from pneumocam.serve.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(tiny_run / "train" / "model.pt", runs=tiny_run.parent, device="cpu", data_roots=(tiny_data,))
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


def _wait(browser, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(condition)


def _pixels(browser, canvas_id, points):
    """The red channel of the canvas at each (x, y) of its drawing buffer."""
    return browser.execute_script(
        "const c = document.getElementById(arguments[0]).getContext('2d');"
        "return arguments[1].map(([x, y]) => c.getImageData(x, y, 1, 1).data[0]);",
        canvas_id,
        points,
    )


def _dataset(browser):
    return browser.execute_script("return {...document.getElementById('viewer').dataset}")


def _set_range(browser, element_id, value):
    browser.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}))",
        element_id,
        value,
    )


def _upload(browser, url, film, **expect):
    from selenium.webdriver.common.by import By

    browser.get(url + "/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#method option"))
    if expect.get("reliance"):
        browser.find_element(By.ID, "ask-reliance").click()
    browser.find_element(By.ID, "file").send_keys(str(film))
    _wait(browser, lambda d: d.execute_script("return document.getElementById('viewer').dataset.zoom !== undefined"))
    _wait(browser, lambda d: d.find_element(By.ID, "probability").text != "")


def _download(browser, name, timeout=30):
    path = browser.downloads / name
    for _ in range(timeout * 10):
        if path.is_file() and path.stat().st_size > 0:
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; found {sorted(p.name for p in browser.downloads.iterdir())}")


def _no_policy_refusals(browser):
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not refused, refused  # nothing the pages load or run was blocked by their own policy


def test_explain_a_film_zoom_pan_window_level_toggle_and_export(browser, server, phantom_data):
    import httpx
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, _ = server
    film = sorted((phantom_data.images / "test" / "PNEUMONIA").glob("*.png"))[0]
    browser.set_window_size(1400, 1000)
    _upload(browser, url, film, reliance=True)
    api = httpx.post(
        url + "/api/predict", files={"file": (film.name, film.read_bytes(), "image/png")}, data={"reliance": "true"}
    ).json()
    assert browser.find_element(By.ID, "probability").text == f"{api['probability']:.3f}"
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#reliance-table div")]
    assert (
        len(rows) == 5
        and rows[1] == f"lungs removed (grey): p(PNEUMONIA) {api['reliance']['probability']['lungs_removed_fill']:.3f}"
    )
    # the colour scale says what the colours are: 256 steps, from the server, and not a probability
    assert browser.execute_script("return document.getElementById('colour-scale').naturalWidth") == 256
    assert "not a probability" in browser.find_element(By.ID, "colour-meaning").text

    # The film fills the canvas at zoom 1, identity window: the canvas shows the film's own grey values.
    side = browser.execute_script("return document.getElementById('film-canvas').width")
    gray = np.asarray(Image.open(film).convert("L"))
    view = _dataset(browser)
    scale = side / gray.shape[1]
    assert view["zoom"] == "1.0000" and abs(float(view["panX"])) < 1 and scale > 2  # not smoothed: pixels stay pixels
    points = [(int((u + 0.5) * scale), int((v + 0.5) * scale)) for u, v in [(10, 10), (32, 32), (40, 20), (20, 50)]]
    shown = _pixels(browser, "film-canvas", points)
    assert shown == [int(gray[v, u]) for u, v in [(10, 10), (32, 32), (40, 20), (20, 50)]]

    # window/level: centre 100, width 100 maps 50..150 onto 0..255 (the formula, written here)
    _set_range(browser, "window-centre", 100)
    _set_range(browser, "window-width", 100)
    expected = [min(255, max(0, round((g - 50) * 255 / 100))) for g in shown]
    assert all(abs(a - b) <= 1 for a, b in zip(_pixels(browser, "film-canvas", points), expected))
    assert expected != shown  # the check can tell the windows apart

    # zoom: one wheel notch towards the viewer, about the canvas centre, scales the drawing by 1.15
    canvas = browser.find_element(By.ID, "overlay-canvas")
    browser.execute_script(
        "const c = arguments[0], b = c.getBoundingClientRect();"
        "c.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, clientX: b.left + b.width / 2,"
        " clientY: b.top + b.height / 2, bubbles: true, cancelable: true}))",
        canvas,
    )
    zoomed = _dataset(browser)
    assert zoomed["zoom"] == "1.1500"
    # the centre stays put: the film's left edge moves left by 0.15 of half the canvas
    assert abs(float(zoomed["panX"]) - (0 - 0.15 * side / 2)) < 1.5
    # pan: a drag of 40 px moves the drawing 40 px (screen px; the drawing buffer is the shown size here)
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(40, 25).release().perform()
    panned = _dataset(browser)
    assert abs(float(panned["panX"]) - float(zoomed["panX"]) - 40) < 1.5
    assert abs(float(panned["panY"]) - float(zoomed["panY"]) - 25) < 1.5
    # the same view on both canvases: the film canvas moved with the overlay's drag
    assert _pixels(browser, "film-canvas", [(2, 2)]) == [0]  # the black border the pan uncovered

    # "o" takes the map off the right-hand canvas, which then shows what the left one does
    before = _pixels(browser, "overlay-canvas", points)
    browser.find_element(By.TAG_NAME, "body").send_keys("o")
    assert _dataset(browser)["overlay"] == "false"
    assert _pixels(browser, "overlay-canvas", points) == _pixels(browser, "film-canvas", points) != before
    browser.find_element(By.TAG_NAME, "body").send_keys("r")  # reset
    # the page may have grown a scroll bar meanwhile, so the canvas's side is read again
    side = browser.execute_script("return document.getElementById('film-canvas').width")
    scale = side / gray.shape[1]
    points = [(int((u + 0.5) * scale), int((v + 0.5) * scale)) for u, v in [(10, 10), (32, 32), (40, 20), (20, 50)]]
    assert _dataset(browser)["zoom"] == "1.0000" and _pixels(browser, "film-canvas", points) == shown

    # export: one PNG, both panels and the caption, the caption also as the file's text
    browser.find_element(By.ID, "export").click()
    exported = Image.open(_download(browser, f"{film.stem}-pneumocam.png"))
    caption = exported.text["Description"]
    assert f"p(PNEUMONIA) {api['probability']:.3f} at threshold {api['threshold']:.3f}" in caption
    assert "map: gradcam" in caption and "guard: " in caption and api["model"]["checkpoint"] in caption
    assert exported.size[0] > 2 * side
    _no_policy_refusals(browser)


def test_a_dicom_opens_in_its_own_window(browser, server, tmp_path, write_dicom):
    from selenium.webdriver.common.by import By

    url, _ = server
    pixels = np.tile(np.linspace(1000, 3000, 64).round().astype(np.uint16), (64, 1))
    film = write_dicom(tmp_path / "film.dcm", pixels, WindowCenter=2000, WindowWidth=1000)
    _upload(browser, url, film)
    # values 1000..3000 spread over 0..255: the window 2000 / 1000 is centre 127.5, width 127.5 there
    assert browser.find_element(By.ID, "window-centre").get_attribute("value") == "128"
    assert browser.find_element(By.ID, "window-width").get_attribute("value") == "128"
    assert "the DICOM's own window" in browser.find_element(By.ID, "window-text").text


def test_the_worklist_steps_through_the_filtered_films_and_exports_a_case(browser, server):
    import csv

    from PIL import Image
    from selenium.webdriver.common.by import By

    url, run = server
    browser.set_window_size(1280, 800)
    browser.get(url + "/runs")
    _wait(browser, lambda d: "films" in d.find_element(By.ID, "count").text)
    total = len(browser.find_elements(By.CSS_SELECTOR, "#table tbody tr"))
    browser.find_element(By.ID, "class-filter").send_keys("NORMAL")
    with open(run / "predictions.csv", newline="") as f:
        normal = sorted(r["path"].split("/")[-1] for r in csv.DictReader(f) if r["label"] == "0")
    shown = [
        tr.get_attribute("title").split("/")[-1] for tr in browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
    ]
    assert total > len(shown) == len(normal) >= 3 and shown == normal  # the filter keeps exactly NORMAL, by path

    browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")[0].click()
    caption = lambda: browser.find_element(By.ID, "film-caption").text  # noqa: E731
    _wait(browser, lambda d: caption().startswith(normal[0]))
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("j")
    _wait(browser, lambda d: caption().startswith(normal[1]))
    body.send_keys("j")
    _wait(browser, lambda d: caption().startswith(normal[2]))
    body.send_keys("k")
    _wait(browser, lambda d: caption().startswith(normal[1]))
    assert browser.find_element(By.ID, "position").text == f"2 of {len(normal)}"
    # the filter held: still only NORMAL listed, and the current row is the one shown
    assert browser.find_element(By.ID, "count").text.startswith(f"{len(normal)} of {total}")
    current = browser.find_element(By.CSS_SELECTOR, "#table tbody tr.current").get_attribute("title")
    assert current.endswith(normal[1])
    # one screen: film and overlay canvases, probability, label, verdict
    assert "NORMAL" in caption() and "p(PNEUMONIA)" in caption()
    assert browser.find_element(By.ID, "verdict").text.startswith(("In distribution", "OUT OF DISTRIBUTION"))

    browser.find_element(By.ID, "export").click()
    stem = normal[1].rsplit(".", 1)[0]
    exported = Image.open(_download(browser, f"{stem}-pneumocam.png"))
    text = exported.text["Description"]
    # the caption names the threshold the run decided at, as its results.json records it (not a fixed 0.5)
    decision = json.loads((run / "results.json").read_text())["decision"]
    assert f"threshold {decision['threshold']:.4f} ({decision['metrics_key']})" in text
    assert normal[1] in text and "guard: " in text and "model: model.pt" in text
    _no_policy_refusals(browser)


@pytest.mark.parametrize("page", ["/", "/runs"])
def test_pages_fit_a_narrow_window_without_sideways_scrolling(browser, server, phantom_data, page):
    from selenium.webdriver.common.by import By

    url, _ = server
    browser.set_window_size(420, 900)
    if page == "/":
        _upload(browser, url, sorted((phantom_data.images / "test" / "NORMAL").glob("*.png"))[0])
    else:
        browser.get(url + page)
        _wait(browser, lambda d: "films" in d.find_element(By.ID, "count").text)
        browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")[0].click()
        _wait(browser, lambda d: d.find_element(By.ID, "film-caption").text)
    inner, scroll = browser.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollWidth]"
    )
    assert scroll <= inner, f"{page} scrolls sideways: {scroll} px of content in {inner} px"
    # the two canvases stack and each fits the window
    width = browser.execute_script("return document.getElementById('film-canvas').getBoundingClientRect().right")
    assert width <= inner
    browser.set_window_size(1400, 1000)
