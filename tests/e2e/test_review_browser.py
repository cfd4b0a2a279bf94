"""The review app in a real browser (Debian's chromium through selenium and chromium-driver).

Filter, accept a suggestion, set a label, keep with a keyboard shortcut, bulk-drop a selection
(checkboxes, and a lasso on the map); OUT/reviews/ then has the rows, a re-run honours them, a
changed file is re-flagged, and a request for a path outside the dataset is refused. The audit
sample: switch to it, set a label on an unflagged row, and its line counts a wrong label.
WINNOW_SCREENSHOTS=<folder> also saves review-app.png, review-map.png and review-audit.png there.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

import winnow
from tests.helpers.review import (
    free_port,
    review_world,
    start_review_server,
    stop_server,
    write_audit_column,
)
from winnow.pipeline.review import read_reviews

pytestmark = pytest.mark.browser
KW = {"encoder": "pixels:16", "k": 5}


def _driver(tmp: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.fail("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--window-size=1500,1000",
                f"--user-data-dir={tmp / 'chrome-profile'}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver_bin), options=opts)


def _wait(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # noqa: BLE001 - the page is re-rendering; try again
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _select(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def _saved(driver, n: int) -> None:
    """Wait until the page has saved `n` requests and shown the result (its list refreshed)."""
    _wait(lambda: driver.find_element("tag name", "body").get_attribute("data-saved") == str(n),
          what=f"save number {n}")


def _cards(driver):
    return driver.find_elements("css selector", "#grid .card")


def test_review_in_chromium_then_runs_honour_it(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    root = review_world(tmp_path / "digits")
    out = tmp_path / "out"
    first = winnow.clean(root, out=out, **KW)
    manifest = first.manifest
    flagged = manifest.filter(pl.col("reasons").list.len() > 0)
    n_issues = flagged.filter(pl.col("reasons").list.contains("label_issue")).height
    port, token = free_port(), "browser-token"
    proc = start_review_server(out, port=port, token=token)
    driver = _driver(tmp_path)
    shots = os.environ.get("WINNOW_SCREENSHOTS")
    try:
        base = f"http://127.0.0.1:{port}/"
        driver.get(base)
        _wait(lambda: driver.find_element("tag name", "body").get_attribute("data-ready") == "1", what="the app")
        assert int(driver.find_element("id", "total").text) == flagged.height
        driver.find_element("id", "reviewer").clear()
        driver.find_element("id", "reviewer").send_keys("selenium")
        driver.execute_script("localStorage.setItem('winnow-reviewer', 'selenium')")

        # filter: label issues only
        _select(driver, "f-reason", "label_issue")
        _wait(lambda: driver.find_element("id", "total").text == str(n_issues), what="the filter")
        cards = _cards(driver)
        assert len(cards) == n_issues
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(shots) / "review-app.png"))

        def card_info(card):
            return (card.get_attribute("data-id"), card.find_element("css selector", ".given").text,
                    card.find_element("css selector", ".sugg").text)

        infos = [card_info(c) for c in cards]
        accept = next(i for i, (_, given, sugg) in enumerate(infos) if sugg not in ("-", given))
        accepted_id, _, suggestion = infos[accept]
        cards[accept].find_element("css selector", ".act-accept").click()
        _saved(driver, 1)

        # set a label on another card
        cards = _cards(driver)
        target = next(i for i, c in enumerate(cards) if c.get_attribute("data-id") != accepted_id)
        set_id, given, _ = card_info(cards[target])
        new_label = next(c for c in map(str, range(10)) if c not in (given, suggestion))
        from selenium.webdriver.support.ui import Select

        Select(cards[target].find_element("css selector", ".set-label")).select_by_value(new_label)
        cards[target].find_element("css selector", ".act-set").click()
        _saved(driver, 2)

        # keyboard: focus a third card, keep it as given with "g"
        cards = _cards(driver)
        third = next(i for i, c in enumerate(cards) if c.get_attribute("data-id") not in (accepted_id, set_id))
        kept_id = cards[third].get_attribute("data-id")
        cards[third].find_element("css selector", ".path").click()  # focus it
        ActionChains(driver).send_keys("g").perform()
        _saved(driver, 3)

        # bulk-drop a selection: the pending label issues left
        _select(driver, "f-state", "pending")
        _wait(lambda: driver.find_element("id", "total").text == str(n_issues - 3), what="the pending filter")
        dropped = [c.get_attribute("data-id") for c in _cards(driver)][:2]
        for sid in dropped:  # each click re-renders the grid: find the card afresh
            driver.find_element("css selector", f'.card[data-id="{sid}"] .pick').click()
        _wait(lambda: driver.find_element("id", "sel-n").text == "2", what="two selected")
        driver.find_element("id", "bulk-drop-selected").click()
        _saved(driver, 4)
        assert len(read_reviews(out / "reviews")) == 5

        # the map: lasso a region, drop what it holds
        driver.find_element("id", "tab-map").click()
        canvas = _wait(lambda: driver.find_element("id", "map-canvas"), what="the map")
        _wait(lambda: "projection" in driver.find_element("id", "mapnote").text, what="the map's points")
        w, h = canvas.size["width"], canvas.size["height"]
        chain = ActionChains(driver).move_to_element_with_offset(canvas, -w // 2 + 5, -h // 2 + 5).click_and_hold()
        for dx, dy in ((w // 3, 0), (w // 3, h // 3), (0, h // 3), (-w // 3, 0)):
            chain = chain.move_by_offset(dx // 2, dy // 2).move_by_offset(dx - dx // 2, dy - dy // 2)
        chain.release().perform()
        lassoed = int(_wait(lambda: driver.find_element("id", "lasso-count").text, what="the lasso"))
        assert lassoed > 0
        if shots:
            driver.save_screenshot(str(Path(shots) / "review-map.png"))
        n_before = len(read_reviews(out / "reviews"))
        lassoed_ids = set(driver.execute_script("return [...state.selected];"))
        assert len(lassoed_ids) == lassoed
        driver.find_element("id", "map-drop").click()
        _saved(driver, 5)
        assert len(read_reviews(out / "reviews")) > n_before

        # a path outside the dataset is refused
        secret = tmp_path / "secret.txt"
        secret.write_text("top secret")
        for path in ("api/image/..%2Fsecret.txt", f"api/image/{secret}", "api/image/..%2F..%2F..%2Fetc%2Fpasswd",
                     "../secret.txt"):
            driver.get(base + path)
            text = driver.find_element("tag name", "body").text
            assert "top secret" not in text and "root:" not in text
            assert "not" in text.lower() or "404" in text or "detail" in text.lower(), text
    finally:
        driver.quit()
        stop_server(proc)

    # What each action left, in order: the lasso (last) drops whatever it held, earlier picks included.
    given_of = dict(manifest.select("sample_id", "label").iter_rows())
    expected = {accepted_id: ("relabel", suggestion), set_id: ("relabel", new_label),
                kept_id: ("keep", given_of[kept_id]), **{s: ("drop", None) for s in dropped},
                **{s: ("drop", None) for s in lassoed_ids}}
    reviews = read_reviews(out / "reviews")
    assert {r["sample_id"]: (r["decision"], r["label"]) for r in reviews.iter_rows(named=True)} == expected
    assert set(reviews["reviewer"]) == {"selenium"}

    # a re-run honours them
    again = winnow.clean(root, out=out, **KW)
    rows = {r["sample_id"]: r for r in again.manifest.iter_rows(named=True)}
    for sid, (decision, label) in expected.items():
        assert (rows[sid]["decision"], rows[sid]["final_label"]) == (decision, label), sid
        assert rows[sid]["review_state"] == "reviewed" and "reviewed" in rows[sid]["reasons"]

    # a changed file is re-flagged
    path = root / rows[set_id]["path"]
    img = Image.open(path).convert("L")
    img.putpixel((1, 1), 255 - img.getpixel((1, 1)))
    img.save(path)
    third = winnow.clean(root, out=out, **KW)
    row = third.manifest.filter(pl.col("sample_id") == set_id).row(0, named=True)
    assert row["review_state"] == "stale" and "review_stale" in row["reasons"]


def test_check_the_audit_sample_in_chromium(tmp_path):
    from selenium.webdriver.support.ui import Select

    root = review_world(tmp_path / "digits")
    out = tmp_path / "out"
    run = winnow.clean(root, out=out, **KW).run_dir
    manifest = pl.read_parquet(run / "manifest.parquet")
    flagged = manifest.filter(pl.col("reasons").list.len() > 0).sort("sample_id")
    clean = manifest.filter((pl.col("reasons").list.len() == 0) & pl.col("content_hash").is_not_null()).sort("sample_id")
    unflagged = set(clean["sample_id"][:8])
    write_audit_column(run / "manifest.parquet", set(flagged["sample_id"][:4]) | unflagged)
    port, token = free_port(), "audit-token"
    proc = start_review_server(out, port=port, token=token)
    driver = _driver(tmp_path)
    shots = os.environ.get("WINNOW_SCREENSHOTS")
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        _wait(lambda: driver.find_element("tag name", "body").get_attribute("data-ready") == "1", what="the app")
        line = driver.find_element("id", "audit-line")
        assert line.is_displayed() and line.text == "Audit: 0 of 12 checked, 0 wrong"
        assert "random sample" in driver.find_element("id", "audit-why").text
        assert int(driver.find_element("id", "total").text) == flagged.height  # the default list as before

        driver.find_element("id", "f-audit").click()
        _wait(lambda: driver.find_element("id", "total").text == "12", what="the audit sample")
        assert driver.find_element("id", "total-line").text == "12 audit samples match"
        cards = _cards(driver)
        assert len(cards) == 12
        # the model's opinion is hidden while auditing: no suggestion, no score, no accept
        for card in cards:
            assert not card.find_element("css selector", ".sugg").is_displayed()
            assert not card.find_element("css selector", ".act-accept").is_displayed()
        assert not driver.find_element("id", "f-sort").is_displayed()
        assert {c.find_element("css selector", "div.now").text for c in cards} == {"not checked yet"}

        card = next(c for c in cards if c.get_attribute("data-id") in unflagged)
        sid, given = card.get_attribute("data-id"), card.find_element("css selector", ".given").text
        assert card.find_element("css selector", ".state").text == "pending"
        new_label = next(c for c in map(str, range(10)) if c != given)
        Select(card.find_element("css selector", ".set-label")).select_by_value(new_label)
        card.find_element("css selector", ".act-set").click()
        _saved(driver, 1)
        _wait(lambda: driver.find_element("id", "audit-line").text == "Audit: 1 of 12 checked, 1 wrong",
              what="the audit line")
        done = driver.find_element("css selector", f'.card[data-id="{sid}"]')
        assert done.find_element("css selector", ".state").text == "reviewed"
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(shots) / "review-audit.png"))
    finally:
        driver.quit()
        stop_server(proc)

    reviews = read_reviews(out / "reviews")
    assert [(r["sample_id"], r["decision"], r["label"]) for r in reviews.iter_rows(named=True)] == [
        (sid, "relabel", new_label)]
