"""`msaic review` end to end in a real headless Chromium (Debian's, through Selenium and the system
chromedriver; nothing is downloaded): six real LUDB records in two sites (one named like a
spreadsheet formula with markup) are ingested, checked, measured and scored by a registered tiny
network that flags everything; the review server serves their worklist. The page loads, filters,
exports the filtered rows, opens an ECG with the keyboard (rendered from the archive with the
store's median beats), and records an adjudication that lands in the store's adjudications/;
requests that do not come from the page are refused. One browser session serves the module."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from flows.cli import main
from flows.review import Review, serve, store_key
from msaic_model.model.config import load_config
from msaic_model.model.net import build_model
from tasks import store as st
from tasks.features.run import build_features
from tasks.ingest.run import ingest_archive
from tasks.quality.run import run_quality
from tasks.review.adjudication import latest_decisions, reviewer_key
from tasks.review.worklist import write_worklist
from tasks.scoring.run import score_archive_run
from tasks.settings import Settings
from tasks.store.pseudonym import PseudonymKeyError
from tests.flows.scoring_setup import TINY_CONFIG
from tests.helpers import copy_ludb
from tests.msaic_model.training.test_model_validation import register_model

HOSTILE_SITE = "=1+1 <b>south"  # a formula start and markup (no slash: a folder name)
SITES = {"north": (1, 2, 3), HOSTILE_SITE: (4, 5, 7)}  # LUDB 6: a clean record the qc/2 gate rejected
REVIEWER = "Dr. Ada Example"
WAIT_S = 20


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(OUT, STORE): the archive scored into OUT and ingested, checked and measured into STORE."""
    root = tmp_path_factory.mktemp("review")
    archive = root / "archive"
    for site, ids in SITES.items():
        copy_ludb(archive / site, ids)
    settings = Settings(workers=1)
    store = root / "store"
    ingest_archive(archive, store, settings)
    run_quality(store, settings)
    build_features(store, settings)
    config = load_config(TINY_CONFIG)
    weights = build_model(config).state_dict()
    model = register_model(
        root / "models", "tiny", {"kind": "net", "model": config.model_dump(mode="json")}, weights, 1e-6
    )
    score_archive_run(archive, model, root / "out", settings)
    return root / "out", store


@pytest.fixture(scope="module")
def review(scored: tuple[Path, Path]) -> Iterator[tuple[Review, str]]:
    out, store = scored
    rev = Review(out, store, REVIEWER, Settings())
    server = serve(rev, 0)
    yield rev, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager fetches nothing
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    yield driver
    driver.quit()


def rows(driver: webdriver.Chrome) -> list[list[str]]:
    return [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in driver.find_elements(By.CSS_SELECTOR, "#rows tr")
    ]


def column(driver: webdriver.Chrome, name: str) -> list[str]:
    heads = [th.text.rstrip(" ▲▼") for th in driver.find_elements(By.CSS_SELECTOR, "#head th")]
    return [row[heads.index(name)] for row in rows(driver)]


def keys(driver: webdriver.Chrome, *typed: str) -> None:
    driver.find_element(By.TAG_NAME, "h1").click()  # focus on the page, not on a control
    ActionChains(driver).send_keys(*typed).perform()


def open_page(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script("return window.msaic && window.msaic.rows()")
    )


def test_the_page_loads_every_flagged_record_escaped(
    browser: webdriver.Chrome, review: tuple[Review, str]
) -> None:
    _, url = review
    open_page(browser, url)
    assert browser.find_element(By.ID, "count").text == "6 of 6 records"
    assert len(rows(browser)) == 6
    assert sorted(set(column(browser, "site"))) == sorted(SITES)  # markup shown as text
    assert not browser.find_elements(By.CSS_SELECTOR, "#rows b")
    assert column(browser, "#") == ["1", "2", "3", "4", "5", "6"]
    probabilities = [float(p) for p in column(browser, "probability")]
    assert probabilities == sorted(probabilities, reverse=True)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_filters_and_exports_the_filtered_rows(browser: webdriver.Chrome, review: tuple[Review, str]) -> None:
    _, url = review
    open_page(browser, url)
    Select(browser.find_element(By.ID, "f-site")).select_by_visible_text(HOSTILE_SITE)
    assert browser.find_element(By.ID, "count").text == "3 of 6 records"
    assert set(column(browser, "site")) == {HOSTILE_SITE}
    exported = list(csv.DictReader(io.StringIO(browser.execute_script("return window.msaic.csv()"))))
    assert len(exported) == 3
    assert {r["site"] for r in exported} == {"'" + HOSTILE_SITE}  # a spreadsheet shows it as text
    assert {r["source_path"] for r in exported} == {
        "'" + f"{HOSTILE_SITE}/{i}.hea" for i in SITES[HOSTILE_SITE]
    }
    Select(browser.find_element(By.ID, "f-verdict")).select_by_visible_text("pass")
    passing = column(browser, "quality")
    assert (
        set(passing) <= {"pass"}
        and len(passing) == len(browser.execute_script("return window.msaic.csv()").splitlines()) - 1
    )
    browser.find_element(By.ID, "f-path").send_keys("no-such-record")
    assert browser.find_element(By.ID, "count").text == "0 of 6 records"
    browser.find_element(By.ID, "reset").click()
    assert browser.find_element(By.ID, "count").text == "6 of 6 records"


def test_the_keyboard_opens_the_ecg_and_records_a_decision(
    browser: webdriver.Chrome, review: tuple[Review, str], scored: tuple[Path, Path]
) -> None:
    rev, url = review
    out, store = scored
    open_page(browser, url)
    keys(browser, "j", "j", "k", Keys.ENTER)  # the second row
    record_id = rev.frame["record_id"].iloc[1]
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.execute_script(
            "const i=document.getElementById('ecg'); return i.complete && i.naturalWidth"
        )
    )
    svg = (out / "ecg" / f"{record_id}.svg").read_text()  # rendered on request, cached in OUT
    assert 'class="median"' in svg and svg.count('class="beat"') == 12  # the store's features
    assert rev.frame["source_path"].iloc[1] in browser.find_element(By.ID, "vtitle").text
    Select(browser.find_element(By.ID, "d-territory")).select_by_visible_text("inferior")
    keys(browser, "m")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script("return window.msaic.saved") == 1)
    assert "mi (inferior)" in browser.find_element(By.ID, "vsaved").text
    assert column(browser, "decision")[1] == "mi (inferior)"
    assert rev.frame["source_path"].iloc[2] in browser.find_element(By.ID, "vtitle").text  # on to the next
    latest = latest_decisions(store)
    assert latest[["record_id", "decision", "territory"]].values.tolist() == [
        [rev.frame["store_record_id"].iloc[1], "mi", "inferior"]
    ]
    stored = st.read_table(store, "adjudications").to_pylist()[0]
    assert stored["reviewer_key"] == reviewer_key(store_key(store, Settings()), REVIEWER)
    assert REVIEWER not in json.dumps(stored, default=str) and stored["model_id"] == "tiny"
    assert (
        stored["source_path"] == rev.frame["source_path"].iloc[1]
        and stored["site"] == rev.frame["site"].iloc[1]
    )
    keys(browser, Keys.ESCAPE)
    open_page(browser, url)  # a reload shows the decisions recorded so far
    WebDriverWait(browser, WAIT_S).until(lambda d: column(d, "decision")[1] == "mi (inferior)")
    Select(browser.find_element(By.ID, "f-decision")).select_by_visible_text("undecided")
    assert browser.find_element(By.ID, "count").text == "5 of 6 records"


def request(url: str, method: str, path: str, body: dict | None = None, **headers: str) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    payload = resp.read()
    return resp.status, json.loads(payload) if resp.getheader("Content-Type") == "application/json" else {}


def test_requests_not_from_the_page_are_refused(
    review: tuple[Review, str], scored: tuple[Path, Path]
) -> None:
    rev, url = review
    _, store = scored
    rid = rev.frame["record_id"].iloc[0]
    before = st.read_table(store, "adjudications").num_rows
    page = {"X-MSAIC-Review": "1"}
    decision = {"record_id": rid, "decision": "mi"}
    assert request(url, "POST", "/api/adjudications", decision)[0] == 403  # not from the page
    assert request(url, "POST", "/api/adjudications", decision, Host="evil.example", **page)[0] == 403
    assert request(url, "GET", "/", Host="evil.example")[0] == 403
    status, body = request(url, "POST", "/api/adjudications", {"record_id": rid, "decision": "maybe"}, **page)
    assert status == 400 and "unknown decision" in body["error"]
    status, body = request(url, "POST", "/api/adjudications", {"record_id": "nope", "decision": "mi"}, **page)
    assert status == 400 and "record_id of the worklist" in body["error"]
    assert request(url, "GET", "/ecg/..%2Fscore_run.json.svg")[0] == 404
    assert request(url, "GET", "/ecg/nope.svg")[0] == 404
    assert st.read_table(store, "adjudications").num_rows == before
    status, body = request(
        url, "POST", "/api/adjudications", {"record_id": rid, "decision": "unreadable"}, **page
    )
    assert status == 200 and body["decided_at"]
    assert pc.sum(pc.equal(st.read_table(store, "adjudications")["decision"], "unreadable")).as_py() == 1


def test_opened_as_a_file_it_shows_rendered_ecgs_and_takes_no_decision(
    browser: webdriver.Chrome, review: tuple[Review, str], scored: tuple[Path, Path]
) -> None:
    rev, _ = review
    out, _ = scored
    rev.ecg(rev.frame["record_id"].iloc[0])
    _, page, n = write_worklist(out)
    open_page(browser, page.as_uri())
    assert n == 6 and len(rows(browser)) == 6
    keys(browser, Keys.ENTER)
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.execute_script("return document.getElementById('ecg').naturalWidth")
    )
    keys(browser, "n")
    assert "msaic review" in browser.find_element(By.ID, "vstatus").text


def test_the_command_refuses_what_cannot_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scored: tuple[Path, Path]
) -> None:
    assert main(["review", "--out", str(tmp_path), "--port", "8"]) == 1
    assert "run `msaic score` first" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["review", "--out", str(tmp_path), "--port", "70000"])
    assert usage.value.code == 2
    # a store written with MSAIC_PSEUDONYM_KEY, reviewed without it: no new key file is made
    _, store = scored
    with pytest.raises(PseudonymKeyError, match="MSAIC_PSEUDONYM_KEY"):
        store_key(store, Settings(pseudonym_key=None))
    assert not (store / ".pseudonym_key").exists()
