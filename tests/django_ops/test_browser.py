"""The admin in a real browser (headless Debian chromium driven by Selenium), against the ops
project served by ``live_server``: log in, open the outbox, filter dead items, requeue one and
see it pending, then edit a policy and watch a running worker pick it up. Screenshots go to
``tests/django_ops/screenshots/`` (or ``$HEADRACE_SCREENSHOTS``).

Runs with ``--browser`` (``scripts/test-ops`` passes it on Django 5.2 / SQLite and installs
Debian's ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SHOTS = Path(os.environ.get("HEADRACE_SCREENSHOTS", Path(__file__).parent / "screenshots"))
POLICY = "config:\n  package: opsdemo.backends\n  schedule: '0 3 * * *'\nscope:\n  count: 2\n"


@pytest.fixture
def browser(request: Any) -> Iterator[Any]:
    if not request.config.getoption("--browser"):
        pytest.skip("the real-browser test runs with --browser (scripts/test-ops)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(5)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _schedule(manager: Any, name: str) -> str | None:
    """The schedule ``manager`` runs ``name`` on (None while the policy is being restarted)."""
    from headrace.errors import NotFoundError

    try:
        return str(manager.policy(name).config.schedule)
    except NotFoundError:
        return None


def _wait(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _follow(driver: Any, element: Any) -> None:
    """Clicks ``element`` and waits until the page it leads to has replaced this one: a click
    returns before the browser has navigated, and reading the page at once reads the old one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(page))
    driver.find_element(By.TAG_NAME, "body")  # the new page has been parsed


def test_operate_from_the_admin(browser: Any, live_server: Any, committed: Any) -> None:
    from conftest import make_items
    from django.contrib.auth.models import User
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from headrace.django.models import OutboxItem
    from headrace.django.policies import open_policies
    from headrace.django.worker import DjangoWorker, WorkerOptions

    User.objects.create_superuser("ops", password="ops-password")
    items = make_items()
    policies = open_policies()
    policies.save(
        "inventory", {"config": {"package": "opsdemo.backends", "schedule": "0 3 * * *"}, "scope": {"count": 2}}
    )
    # A running worker that follows the stored policies (it leaves the test's items alone).
    worker = DjangoWorker(WorkerOptions(worker_id="browser-worker", topics=["headrace.policy.run_now"], bridges=False))
    worker._start_background()
    runner = threading.Thread(target=worker.worker.run, daemon=True)
    runner.start()
    try:
        # Log in.
        browser.get(live_server.url + "/admin/login/")
        browser.find_element(By.NAME, "username").send_keys("ops")
        browser.find_element(By.NAME, "password").send_keys("ops-password")
        _follow(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
        assert "Site administration" in browser.title
        _shot(browser, "01-admin-index")

        # The outbox with its health header; filter the dead items.
        browser.get(live_server.url + "/admin/headrace/outboxitem/")
        header = browser.find_element(By.ID, "headrace-queue-health").text
        assert "dead: 1" in header and "oldest due pending" in header
        _shot(browser, "02-outbox")
        _follow(browser, browser.find_element(By.LINK_TEXT, "Dead (failed)"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        assert len(rows) == 1 and str(items.dead) in rows[0].text
        _shot(browser, "03-outbox-dead")

        # Requeue it and see it pending.
        rows[0].find_element(By.CSS_SELECTOR, "input.action-select").click()
        Select(browser.find_element(By.NAME, "action")).select_by_value("requeue")
        _follow(browser, browser.find_element(By.CSS_SELECTOR, "button[name=index]"))
        assert "Requeued 1 item(s)" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
        assert browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr") == []
        browser.get(f"{live_server.url}/admin/headrace/outboxitem/?q={items.dead}")
        row = browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr").text
        assert "Ready" in row and "Pending" in row and "0/1" in row
        assert OutboxItem.objects.get(pk=items.dead).status == "pending"
        _shot(browser, "04-requeued-pending")

        # Edit the policy in the admin; the running worker applies it without a restart.
        _wait(lambda: "inventory" in worker.manager.policies, "the worker to start the stored policy")
        browser.get(live_server.url + "/admin/headrace/policy/")
        _shot(browser, "05-policies")
        _follow(browser, browser.find_element(By.LINK_TEXT, "inventory"))
        document = browser.find_element(By.NAME, "document")
        document.clear()
        document.send_keys(POLICY.replace("0 3 * * *", "30 4 * * *").replace("count: 2", "count: 4"))
        _shot(browser, "06-policy-edit")
        _follow(browser, browser.find_element(By.NAME, "_save"))
        assert "running workers apply it within seconds" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
        _wait(
            lambda: _schedule(worker.manager, "inventory") == "30 4 * * *",
            "the running worker to pick up the edit",
        )
        browser.find_element(By.CSS_SELECTOR, "tr[data-policy=inventory] input.headrace-run-now").click()
        _wait(
            lambda: [str(r.status) for r in policies.runs("inventory", 1)] == ["completed"],
            "the worker to finish running the policy",
        )
        browser.get(live_server.url + "/admin/headrace/policy/inventory/runs/")
        run_row = browser.find_element(By.CSS_SELECTOR, "#headrace-runs tbody tr").text
        assert "completed" in run_row and "manual" in run_row and " 4 " in f" {run_row} "
        _shot(browser, "07-policy-runs")
    finally:
        worker.stop()
        runner.join(timeout=30)
        worker.close()
        policies.state.close()
