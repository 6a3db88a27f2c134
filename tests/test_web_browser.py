"""The web channel as a customer uses it, in a real browser: Debian's headless Chromium driven
by Selenium through Debian's chromium-driver (nothing is downloaded at test time).

The customer fills in the form and sends it; the acknowledgement in the outbox carries the
status link; a staff member answers; the customer opens the link, reads the answer and adds a
reply that lands on the ticket. Screenshots of each page, at desktop and phone widths, go to
the test's folder — or, with `MAILD_SCREENSHOTS=docs`, to the repository's docs/ (README).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.servers import wait_until
from tests.test_web import CUSTOMER, Site

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP, PHONE = (1200, 1000), (390, 844)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    yield site
    site.daemon.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={tmp_path / 'chromium'}", "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shots(tmp_path: Path) -> Path:
    folder = os.environ.get("MAILD_SCREENSHOTS")
    target = Path(__file__).resolve().parent.parent / folder if folder else tmp_path / "shots"
    target.mkdir(parents=True, exist_ok=True)
    return target


def wait_for(browser: WebDriver, by: str, what: str) -> WebElement:
    return WebDriverWait(browser, 30).until(
        expected_conditions.presence_of_element_located((by, what)))


def screenshot(browser: WebDriver, folder: Path, name: str) -> None:
    """The page at desktop and at phone width."""
    for label, (width, height) in (("desktop", DESKTOP), ("phone", PHONE)):
        browser.set_window_size(width, height)
        full = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, min(max(height, int(full) + 120), 2400))
        path = folder / f"web-{name}-{label}.png"
        assert browser.save_screenshot(str(path))
        assert path.stat().st_size > 10_000
    browser.set_window_size(*DESKTOP)


def test_a_customer_asks_reads_the_answer_and_replies_in_a_real_browser(
    site: Site, browser: WebDriver, tmp_path: Path,
) -> None:
    folder = shots(tmp_path)
    browser.set_window_size(*DESKTOP)
    browser.get(site.base + "/?lang=en")
    browser.find_element(By.NAME, "name").send_keys("Anna Smirnova")
    browser.find_element(By.NAME, "email").send_keys(CUSTOMER)
    browser.find_element(By.NAME, "subject").send_keys("Printer prints blank pages")
    browser.find_element(By.NAME, "body").send_keys(
        "Hello,\nsince this morning our office printer prints only blank pages.")
    browser.find_element(By.CSS_SELECTOR, "input[name=priority][value=high]").click()
    log = tmp_path / "printer-log.txt"
    log.write_text("E52: toner sensor\n")
    browser.find_element(By.NAME, "files").send_keys(str(log))
    screenshot(browser, folder, "form")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # A click does not wait for the next page: the post answers once the ticket is threaded.
    number = wait_for(browser, By.CLASS_NAME, "number").text
    assert number.isdigit() and len(number) == 13
    screenshot(browser, folder, "answer")
    ticket = site.ticket(number)
    assert (ticket["channel"], ticket["priority"]) == ("web", "high")
    assert ticket["messages"][0]["attachments"][0]["filename"] == "printer-log.txt"

    link = site.link_in_ack(number)  # the acknowledgement, from the outbox
    reply = site.daemon.cli("ticket", "reply", number, "--staff", "alice@example.com",
                            "--body", "Hello Anna,\nplease replace the toner cartridge.")
    assert reply.returncode == 0, reply.stderr

    browser.get(link)
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "please replace the toner cartridge" in page
    assert "answered, waiting for you" in page
    screenshot(browser, folder, "status")
    browser.find_element(By.NAME, "body").send_keys("Thank you, that fixed it!")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "Your message was added" in wait_for(browser, By.CLASS_NAME, "notice").text

    def replied() -> bool:
        return any(m["direction"] == "in" and "that fixed it" in m["body"]
                   for m in site.ticket(number)["messages"])

    assert wait_until(replied, timeout=20)
    assert site.ticket(number)["status"] == "open"  # the customer answered: back to work
