"""The web console, driven in headless Chromium (Debian's package) against the embedded hub."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from .helpers import EXAMPLES, ROOT, SEQUENCES, needs_chromium, package_dir

pytestmark = needs_chromium


@pytest.fixture
def page(browser, hub):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(hub["url"].replace("/api/v1", "/console"))
    page.wait_for_selector("#hub-version:has-text('sequence-hub')")
    page.console_errors = errors
    yield page
    assert errors == [], errors  # no console errors, ever
    context.close()


def upload(page, path: Path, tmp_path: Path) -> None:
    package = tmp_path / f"{path.name}.tar.gz"
    package.write_bytes(package_dir(path))
    page.set_input_files("#upload-input", str(package))
    page.wait_for_selector(f"#banner.ok:has-text('Uploaded {package.name}')")


def row_of(page, name: str):
    return page.locator("#sequences tbody tr", has_text=name).first


def test_upload_start_and_read_the_counter(page, tmp_path):
    upload(page, EXAMPLES / "counter-js", tmp_path)
    row = row_of(page, "counter-js")
    row.get_by_label("Arguments for counter-js").fill("3000 10")
    row.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r"#/instance/"))
    page.wait_for_selector("#inst-status.status-completed")
    expected = "".join(f"{n}\n" for n in range(3000, 3010))
    page.wait_for_function("t => document.querySelector('#channel').textContent === t", arg=expected)
    assert page.locator("#inst-info").inner_text().count("Instance completed") == 1
    assert "Engine\nlambda" in page.locator("#inst-info").inner_text()
    page.keyboard.press("Tab")  # tabs are keyboard reachable: arrow keys move between channels
    page.locator("#tab-output").focus()
    page.keyboard.press("ArrowRight")
    assert page.locator("#tab-stdout").get_attribute("aria-selected") == "true"
    page.locator("#tab-log").click()
    page.wait_for_function("() => document.querySelector('#channel').textContent.includes('Instance completed')")
    page.locator("#tab-output").click()
    # The README's picture of the console, taken again only when asked: a test run leaves the checkout as it was.
    shot = ROOT / "docs" / "console-instance.png" if os.environ.get("SEQHUB_UPDATE_SCREENSHOTS") else tmp_path / "console.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_kill_a_long_running_instance(page, tmp_path):
    upload(page, SEQUENCES / "js-busy-loop", tmp_path)
    row_of(page, "js-busy-loop").get_by_role("button", name="Start").click()
    page.wait_for_selector("#inst-status.status-running")
    page.get_by_role("button", name="Kill").click()
    page.wait_for_selector("#inst-status.status-completed", timeout=30_000)
    assert "Instance killed" in page.locator("#inst-info").inner_text()
    page.get_by_role("link", name="All sequences and instances").click()
    page.wait_for_selector("#instances .status-completed")


def test_input_and_typed_args(page, tmp_path):
    upload(page, SEQUENCES / "py-hello", tmp_path)
    row_of(page, "py-hello").get_by_role("button", name="Start").click()
    page.wait_for_selector("#inst-status.status-running")
    page.fill("#input-form textarea", "Alice\n")
    page.check("#input-form input[name=end]")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("() => document.querySelector('#channel').textContent === 'Hello Alice!\\n'")
    assert page.evaluate("() => seqhubParseArgs('3000 10 true null x \"42\"')") == [3000, 10, True, None, "x", "42"]


def test_delete_explains_the_409_and_an_expired_instance(page, tmp_path, hub, session):
    upload(page, SEQUENCES / "py-events", tmp_path)
    row_of(page, "py-events").get_by_role("button", name="Start").click()
    page.wait_for_selector("#inst-status.status-running")
    instance_url = page.url
    page.get_by_role("link", name="All sequences and instances").click()
    page.once("dialog", lambda dialog: dialog.accept())
    row_of(page, "py-events").get_by_role("button", name="Delete py-events").click()
    page.wait_for_selector("#banner:has-text('still running')")
    assert "kill them" in page.locator("#banner").inner_text()
    page.goto(instance_url.split("#")[0] + "#/instance/no-such-instance")
    page.wait_for_selector("#expired:visible")
    # Chromium itself logs every 4xx response; the two the page showed the user are expected.
    page.console_errors[:] = [e for e in page.console_errors
                              if not re.search(r"status of (409 \(Conflict\)|404 \(Not Found\))", e)]


def test_narrow_window_and_sigv4_matches_botocore(browser, hub):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.goto(hub["url"].replace("/api/v1", "/console"))
    page.wait_for_selector("#sequences")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/api/api/v1/instance/x/output?wait=20&cursor="
    body = json.dumps({"args": [1]})
    ours = page.evaluate("""([url, body]) => seqhubSigV4({method: 'POST', url, body,
        headers: {'Content-Type': 'application/json'}, region: 'eu-west-1', amzDate: '20261127T120000Z',
        creds: {accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret-example'}})""", [url, body])
    request = AWSRequest(method="POST", url=url, data=body.encode(), headers={"Content-Type": "application/json"})
    request.context["timestamp"] = "20261127T120000Z"
    request.headers["X-Amz-Date"] = "20261127T120000Z"
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", "secret-example"), "execute-api", "eu-west-1")
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert ours["Authorization"].endswith(f"Signature={signature}")
    context.close()


TICKER = """module.exports = async function* () {
  for (let i = 0; ; i++) { yield `tick ${i}\\n`; await new Promise((r) => setTimeout(r, 2)); }
};
"""


def test_leaving_an_instance_mid_stream_logs_nothing(page, hub):
    import requests

    from .helpers import js_package

    seq = requests.post(f"{hub['url']}/sequence", data=js_package(TICKER, name="ticker"), timeout=30,
                        headers={"Content-Type": "application/octet-stream"}).json()["id"]
    inst = requests.post(f"{hub['url']}/sequence/{seq}/start", json={}, timeout=30).json()["id"]
    home = page.url.split("#")[0]
    try:
        for _ in range(20):  # each visit follows four channels; leaving aborts their reads, some mid-body
            page.goto(f"{home}#/instance/{inst}")
            page.wait_for_function("() => document.querySelector('#channel').textContent.includes('tick')")
            page.get_by_role("link", name="All sequences and instances").click()
            page.wait_for_selector("#sequences")
    finally:
        requests.post(f"{hub['url']}/instance/{inst}/kill", json={}, timeout=30)
    # the page fixture then finds no console error and no unhandled rejection
