"""The auditor's page (`/audit`, issue 12 item 4) in a real headless Chromium, against a real
`ledger serve` process over a store holding the demo's day (`ledger demo`, 2 accounts and the 4
portfolio books), on SQLite and PostgreSQL.

Selenium drives Debian's own pair, `/usr/bin/chromium` and `/usr/bin/chromedriver`, built from
the same source and so always of one version: nothing is downloaded (Selenium Manager is
bypassed by giving both paths), and WebDriver is a W3C standard. Playwright would bring its own
driver (a Node.js bundle) that supports one Chromium revision of its own; Debian's is not it.

What the page shows is checked against the API's JSON for the same question, fetched by the
test itself with the same token: every figure shown equals the API's value after the display
rule of docs/audit.md, computed here in Python with `Decimal` (an implementation independent of
the page's, which works on strings in JavaScript; hand-rounded cases pin the rule itself), and
every exact value is in the figure's `title`. No figure of the JSON is left unshown.

Without Chromium the tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx
import pytest
from api_support import wait_until_serving
from store_tamper import tamper

from ledger.display import places_of, rounded

LEDGER = Path(sys.executable).parent / "ledger"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PG_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DASH = "—"
WAIT_S = 30
SINGLE = "acct0000"  # single-asset: cross and isolated positions, liquidation prices
BOOK = "pm-hedged"  # portfolio mode: risk units, a USDT debt with interest
TYPED = "2025-03-03T13:37:42Z"  # a second inside the demo's day (2025-03-03)


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER.exists():
        return f"no chromedriver at {CHROMEDRIVER} (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def _need_browser() -> None:
    missing = _missing_browser()
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the browser test must run under CI=true: {missing}")
    pytest.skip(missing)


# ---------------------------------------------------------------------- the server


@dataclass
class Served:
    base: str
    db: str
    token: str
    service_token: str

    def api(self, path: str, **params: str) -> httpx.Response:
        response = httpx.get(self.base + path, params=params, timeout=60,
                             headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response


def _env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    return {**base, "COLUMNS": "200", "NO_COLOR": "1"}


def _ledger(*args: str, cwd: Path) -> str:
    done = subprocess.run([str(LEDGER), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=_env(), check=False)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + name))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def demo_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Served]:
    """`ledger serve` over the demo's day, and an auditor's token."""
    _need_browser()  # before minutes of set-up that could not be used
    directory = tmp_path_factory.mktemp("audit-page")
    dropped: str | None = None
    if request.param == "sqlite":
        db = f"sqlite:///{directory / 'demo.db'}"
    else:
        import psycopg

        try:
            admin = psycopg.connect(_database(PG_URL, "postgres"), autocommit=True,
                                    connect_timeout=3)
        except Exception as error:  # noqa: BLE001 - any connection failure means "no server"
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL at {PG_URL} is required under CI=true: {error}")
            pytest.skip(f"no PostgreSQL at {PG_URL}: {error}")
        dropped = f"ledger_audit_page_{os.getpid()}"
        with admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{dropped}"')
        db = _database(PG_URL, dropped)
    _ledger("--db", db, "demo", "--accounts", "2", "--seed", "7", cwd=directory)
    token, service_token = (
        _ledger("--db", db, "token", "create", "--role", role, "--name", f"page-{role}",
                cwd=directory).strip().splitlines()[-1] for role in ("auditor", "service"))
    port = _free_port()
    log = directory / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([str(LEDGER), "--db", db, "serve", "--port", str(port)],
                                   cwd=directory, stdout=sink, stderr=subprocess.STDOUT,
                                   env=_env())
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process, log)
        yield Served(base, db, token, service_token)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if dropped is not None:
            import psycopg

            with psycopg.connect(_database(PG_URL, "postgres"), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')


# ---------------------------------------------------------------------- the browser


@dataclass
class Browser:
    driver: Any
    downloads: Path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1600"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield Browser(driver, downloads)
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(
        lambda d: condition(d), message=what)


def _app(driver: Any, attribute: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "app").get_attribute(attribute) or "")


def _open(browser: Browser, served: Served, token: str) -> None:
    """Load the page afresh (no token kept from an earlier test) and enter `token`."""
    from selenium.webdriver.common.by import By

    driver = browser.driver
    driver.get(served.base + "/audit")
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    field = driver.find_element(By.CSS_SELECTOR, "[data-testid=token]")
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "[data-testid=use-token]").click()
    _wait(driver, lambda d: _app(d, "data-status") in ("connected", "error"), "connect")


def _choose(browser: Browser, account: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser.driver
    Select(driver.find_element(By.CSS_SELECTOR, "[data-testid=account]")).select_by_value(
        account)
    _wait(driver, lambda d: _app(d, "data-status") == "ready"
          and _app(d, "data-account") == account, f"{account} shown")


def _shown_at(browser: Browser, at: str) -> None:
    _wait(browser.driver, lambda d: _app(d, "data-status") == "ready"
          and _app(d, "data-at") == at, f"state at {at} shown")


# ---------------------------------------------------------------------- the display rule


def _expected(path: str, value: Any, state: dict[str, Any]) -> str:
    """What docs/audit.md says the page shows for the JSON value at `path` (Decimal here)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return DASH
    parts = path.split(".")
    key = parts[-1]
    if parts[0] in ("account", "mode", "as_of"):
        return str(value)
    try:
        Decimal(value)
    except (ArithmeticError, TypeError, ValueError):
        return str(value)  # text: symbol, side, an option's type ...
    if parts[0] == "positions" and key in ("symbol", "margin_type", "side"):
        return str(value)
    if key in ("margin_ratio", "margin_level"):
        return rounded(Decimal(value), 4)
    in_risk_unit = parts[:2] == ["margin", "risk_units"]
    if key.endswith("_usd") or (in_risk_unit and key not in ("delta", "spot_in_use")):
        return rounded(Decimal(value), 2)
    if parts[0] == "positions" and key.endswith("_price") and key != "mark_price":
        mark = state["positions"][int(parts[1])]["mark_price"]
        if mark is not None:
            return rounded(Decimal(value), places_of(mark))
    return rounded(Decimal(value), 8, strip=True)


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}.{index}")
    else:
        yield path, value


def _shown(driver: Any, container: str) -> dict[str, tuple[str, str | None]]:
    """Every `[data-field]` under `container`: its text and its title, read in one call."""
    found: list[list[Any]] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' [data-field]')]"
        ".map(e => [e.dataset.field, e.textContent, e.getAttribute('title')])", container)
    shown = {path: (text, title) for path, text, title in found}
    assert len(shown) == len(found), "two elements show one figure"
    return shown


def _assert_state_shown(browser: Browser, served: Served, account: str, at: str) -> None:
    state = served.api(f"/v1/accounts/{account}/state", at=at).json()
    assert state["as_of"] == at
    shown = _shown(browser.driver, "#state")
    expected = dict(_leaves(state))
    assert set(shown) == set(expected), "every figure of the JSON is shown, and nothing else"
    for path, value in expected.items():
        text, title = shown[path]
        assert text == _expected(path, value, state), (path, value, text)
        if isinstance(value, str) and path not in ("account", "mode", "as_of") \
                and not path.endswith(("symbol", "margin_type", "side")):
            assert title == value, (path, value, title)  # the exact figure on hover
        elif value is None:
            assert title == "undefined (null in the JSON)", path


def _assert_timeline_shown(browser: Browser, served: Served, account: str, at: str) -> None:
    """The timeline: the API's events at or before `at`, newest first, postings rounded by the
    amount rule with the exact amount on hover."""
    events = served.api(f"/v1/accounts/{account}/events", until=at).json()
    assert events, f"{account} has events up to {at}"
    found: list[dict[str, Any]] = browser.driver.execute_script(
        "return [...document.querySelectorAll('[data-testid=event]')].map(e => ({"
        " version: e.dataset.version, type: e.dataset.type, at: e.dataset.at,"
        " hash: e.dataset.hash, id: (e.querySelector('[data-field=id]') || {}).textContent,"
        " postings: [...e.querySelectorAll('[data-field$=\".amount\"]')].map(p => ["
        "  p.closest('tr').querySelector('[data-field$=\".account\"]').textContent,"
        "  p.closest('tr').querySelector('[data-field$=\".asset\"]').textContent,"
        "  p.textContent, p.getAttribute('title')])}))")
    expected = [{
        "version": str(event["version"]), "type": event["type"], "at": event["at"],
        "hash": event["hash"], "id": event.get("id"),
        "postings": [[p["account"], p["asset"], rounded(Decimal(p["amount"]), 8, strip=True),
                      p["amount"]] for p in event.get("postings", [])],
    } for event in reversed(events)]
    assert found == expected


# ---------------------------------------------------------------------- the tests


def test_the_display_rule_rounds_decimal_strings_half_even(
        demo_server: Served, browser: Browser) -> None:
    """The page's rounding on hand-rounded cases: ties go to the even digit (0.125 → 0.12,
    0.135 → 0.14), a tie broken by a later digit goes up (0.1250000001 → 0.13), a carry runs
    through the nines (9.995 → 10.00, 99.99995 → 100.0000), a rounded zero has no sign
    (-0.004 → 0.00), 35 significant digits stay exact (no float), and amounts drop trailing
    zeros (100.000 → 100)."""
    browser.driver.get(demo_server.base + "/audit")
    cases = [
        ("0.125", "usd", None, "0.12"), ("0.135", "usd", None, "0.14"),
        ("0.1250000001", "usd", None, "0.13"), ("9.995", "usd", None, "10.00"),
        ("-9.995", "usd", None, "-10.00"), ("-0.004", "usd", None, "0.00"),
        ("-0.005", "usd", None, "0.00"), ("-0.0051", "usd", None, "-0.01"),
        ("99.99995", "ratio", None, "100.0000"), ("0.00214013007146", "ratio", None, "0.0021"),
        ("12345678901234567890123456.123456789", "usd", None, "12345678901234567890123456.12"),
        ("100.000", "amount", None, "100"), ("0.000000005", "amount", None, "0"),
        ("0.000000015", "amount", None, "0.00000002"), ("-64391.9873431", "amount", None,
                                                        "-64391.9873431"),
        ("61729.31372039883672621520565018695", "price", "64063.4", "61729.3"),
        ("2.5", "price", "7", "2"), ("3.5", "price", "7", "4"), ("59742.25", "price", None,
                                                                  "59742.25"),
        (None, "usd", None, DASH),
    ]
    got = browser.driver.execute_script(
        "return arguments[0].map(c => window.ledgerAudit.display(c[0], c[1], c[2]))", cases)
    assert got == [case[3] for case in cases]


def test_two_accounts_at_two_times_show_the_apis_figures(
        demo_server: Served, browser: Browser) -> None:
    """Choose an account, move the slider, then another account and a typed second: every
    figure equals the API's state JSON at that second after the display rule, the timeline is
    the API's events up to that second, and the chain status is /v1/verify's."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser.driver
    _open(browser, demo_server, demo_server.token)
    assert _app(driver, "data-status") == "connected"

    # The hash chains, as /v1/verify reports them.
    verify = demo_server.api("/v1/verify").json()
    _wait(driver, lambda d: d.find_element(By.ID, "chain-status").get_attribute("data-state")
          in ("intact", "broken"), "chain checked")
    status = driver.find_element(By.ID, "chain-status").get_attribute("data-state")
    assert status == ("intact" if not verify["breaks"] else "broken")
    shown = _shown(driver, "#chain")
    for key in ("events", "streams", "accounts", "snapshots", "log_position"):
        assert shown[f"verify.{key}"][0] == str(verify[key]), key
    assert shown["verify.breaks"][0] == str(len(verify["breaks"])) == "0"
    assert driver.find_element(By.ID, "chain-account").text == ""  # no account chosen yet

    # One account, at a second chosen with the slider (Home: its first event; each Page Up
    # a tenth of its span further).
    _choose(browser, SINGLE)
    events = demo_server.api(f"/v1/accounts/{SINGLE}/events").json()
    first = datetime.fromisoformat(events[0]["at"].replace("Z", "+00:00"))
    slider = driver.find_element(By.CSS_SELECTOR, "[data-testid=slider]")
    slider.send_keys(Keys.HOME)
    for _ in range(4):
        slider.send_keys(Keys.PAGE_UP)
    offset = int(slider.get_attribute("value"))
    assert 0 < offset < int(slider.get_attribute("max"))
    at = (first + timedelta(seconds=offset)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _shown_at(browser, at)
    assert driver.find_element(By.CSS_SELECTOR, "[data-testid=at]").get_attribute("value") == at
    _assert_state_shown(browser, demo_server, SINGLE, at)
    _assert_timeline_shown(browser, demo_server, SINGLE, at)
    assert driver.find_elements(By.CSS_SELECTOR, "#state [data-field$='.liquidation_price']")
    assert driver.find_element(By.ID, "chain-account").text == f"{SINGLE}: no break in its chain."

    # Another account, at a typed second.
    _choose(browser, BOOK)
    typed = driver.find_element(By.CSS_SELECTOR, "[data-testid=at]")
    typed.clear()
    typed.send_keys(TYPED + Keys.ENTER)
    _shown_at(browser, TYPED)
    _assert_state_shown(browser, demo_server, BOOK, TYPED)
    _assert_timeline_shown(browser, demo_server, BOOK, TYPED)
    assert driver.find_elements(By.CSS_SELECTOR, "#state [data-field^='margin.risk_units.']")
    assert not driver.find_element(By.ID, "error").is_displayed()


def test_the_statement_downloaded_is_the_apis_csv(demo_server: Served, browser: Browser) -> None:
    from selenium.webdriver.common.by import By

    driver = browser.driver
    _open(browser, demo_server, demo_server.token)
    _choose(browser, SINGLE)
    start, end = "2025-03-03T02:00:00Z", "2025-03-03T09:30:00Z"
    for field, value in (("from", start), ("to", end)):
        box = driver.find_element(By.CSS_SELECTOR, f"[data-testid={field}]")
        box.clear()
        box.send_keys(value)
    for earlier in browser.downloads.iterdir():  # the other backend's (same name)
        earlier.unlink()
    driver.find_element(By.CSS_SELECTOR, "[data-testid=download]").click()
    done = driver.find_element(By.CSS_SELECTOR, "[data-testid=statement-done]")
    _wait(driver, lambda d: done.get_attribute("data-file"), "statement downloaded")
    target = browser.downloads / done.get_attribute("data-file")
    _wait(driver, lambda d: target.exists() and target.stat().st_size > 0
          and not list(browser.downloads.glob("*.crdownload")), f"{target} written")
    expected = demo_server.api(f"/v1/accounts/{SINGLE}/statement", **{
        "from": start, "to": end, "format": "csv"}).content
    assert expected.startswith(b"at,event,")
    assert expected.count(b"\n") > 3, "the period holds postings"
    assert target.read_bytes() == expected


def test_a_refused_token_or_a_bad_time_is_said_plainly(
        demo_server: Served, browser: Browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser.driver
    _open(browser, demo_server, "not-a-token")
    error = driver.find_element(By.CSS_SELECTOR, "[data-testid=error]")
    assert _app(driver, "data-status") == "error"
    assert error.is_displayed()
    assert "401" in error.text
    assert "refused" in error.text
    assert "unknown or revoked token" in error.text
    assert not driver.find_element(By.CSS_SELECTOR, "[data-testid=account]").is_enabled()
    assert driver.execute_script("return sessionStorage.length") == 0
    _open(browser, demo_server, "tök-én")  # no HTTP header could carry it
    assert "That is not a token" in driver.find_element(By.ID, "error").text

    # The right token is kept for the session (a reload stays connected).
    _open(browser, demo_server, demo_server.token)
    driver.refresh()
    _wait(driver, lambda d: _app(d, "data-status") == "connected", "connected after reload")
    _choose(browser, SINGLE)
    error = driver.find_element(By.CSS_SELECTOR, "[data-testid=error]")
    typed = driver.find_element(By.CSS_SELECTOR, "[data-testid=at]")
    typed.clear()
    typed.send_keys("2025-03-03 12:00" + Keys.ENTER)
    _wait(driver, lambda d: error.is_displayed(), "a bad time refused")
    assert 'Not a second in UTC: "2025-03-03 12:00"' in error.text

    # Before the account was opened it was unknown: the API's message, as it is.
    typed.clear()
    typed.send_keys("2025-03-02T00:00:00Z" + Keys.ENTER)
    _wait(driver, lambda d: _app(d, "data-status") == "error", "unknown then")
    answer = httpx.get(f"{demo_server.base}/v1/accounts/{SINGLE}/state",
                       params={"at": "2025-03-02T00:00:00Z"},
                       headers={"Authorization": f"Bearer {demo_server.token}"})
    assert answer.status_code in (404, 422)
    assert answer.json()["message"] in error.text
    assert str(answer.status_code) in error.text
    assert not driver.find_elements(By.CSS_SELECTOR, "#state [data-field^='margin.']")


def test_a_role_without_verify_sees_the_403_there_and_the_rest(
        demo_server: Served, browser: Browser) -> None:
    """A `service` token may read state and events but not /v1/verify: the chain status says
    403 plainly, and the account is still shown."""
    from selenium.webdriver.common.by import By

    driver = browser.driver
    _open(browser, demo_server, demo_server.service_token)
    assert _app(driver, "data-status") == "connected"
    chain = driver.find_element(By.ID, "chain-status")
    _wait(driver, lambda d: chain.get_attribute("data-state") == "unavailable", "verify refused")
    assert "403" in chain.text
    _choose(browser, BOOK)
    assert driver.find_elements(By.CSS_SELECTOR, "#state [data-field='margin.equity_usd']")
    assert not driver.find_element(By.ID, "error").is_displayed()


def test_the_page_needs_no_token_and_allows_no_third_party(demo_server: Served) -> None:
    page = httpx.get(demo_server.base + "/audit", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert b"http" not in page.content.replace(b"http-equiv", b""), "no third-party resource"
    assert "/audit" not in httpx.get(demo_server.base + "/openapi.json").json()["paths"]


def test_a_broken_chain_is_shown_and_marked_on_its_account(
        demo_server: Served, browser: Browser) -> None:
    """Last on each backend, as it spoils the store: acct0001's deposit is edited in the
    database (a 9 put before its amount); the page says BROKEN with /v1/verify's break, and marks it
    on that account."""
    from selenium.webdriver.common.by import By

    victim = "acct0001"
    deposit = next(event for event in demo_server.api(f"/v1/accounts/{victim}/events").json()
                   if event["type"] == "Deposited")
    amount = deposit["amount"].encode()
    # The lean row stores the hashed body as it is (docs/architecture.md): edit the amount there.
    tamper(demo_server.db, victim, deposit["version"], b'"amount":"' + amount + b'"',
            b'"amount":"9' + amount + b'"')
    verify = demo_server.api("/v1/verify").json()
    assert [(b["stream"], b["version"]) for b in verify["breaks"]] == [
        (victim, deposit["version"])]

    driver = browser.driver
    _open(browser, demo_server, demo_server.token)
    status = driver.find_element(By.ID, "chain-status")
    _wait(driver, lambda d: status.get_attribute("data-state") == "broken", "chain broken")
    shown = _shown(driver, "#chain")
    assert shown["verify.intact"][0] == "BROKEN"
    assert shown["verify.breaks"][0] == "1"
    (only,) = verify["breaks"]
    assert shown["verify.breaks.0"][0] == f"{victim} at version {only['version']}: {only['reason']}"
    _choose(browser, SINGLE)
    line = driver.find_element(By.ID, "chain-account")
    assert (line.get_attribute("data-state"), line.text) == (
        "intact", f"{SINGLE}: no break in its chain.")
    _choose(browser, victim)
    assert line.get_attribute("data-state") == "broken"
    assert line.text.startswith(f"{victim}: BROKEN, 1 break(s)")
    marked = driver.find_element(By.CSS_SELECTOR, "[data-field='verify.breaks.0']")
    assert "mine" in (marked.get_attribute("class") or "")
