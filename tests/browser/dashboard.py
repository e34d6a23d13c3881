"""The dashboard in a real headless Chromium, driven over WebDriver.

Started by tests/tests/dashboard.rs against the real `rampart` binary,
with what it needs in the environment:

  RAMPART_ADMIN, RAMPART_HTTP   the operator and application listeners
  ADMIN_TOKEN, READ_TOKEN       an `admin` and a `read` admin token
  SDK_KEY                       the staging environment's SDK key
  PRODUCTION_SDK_KEY            the production environment's (protected: true)
  REPORTER_KEY                  the staging environment's reporter key
  AXE                           path of axe-core's axe.min.js
  SCREENSHOTS                   directory for a PNG of every page

Each check raises on failure; the test fails with the message. Waiting is
always polling with a deadline, never a fixed sleep.
"""

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from page_checks import DESKTOP, PageChecks, log

ADMIN = os.environ["RAMPART_ADMIN"]
HTTP = os.environ["RAMPART_HTTP"]
ADMIN_TOKEN = os.environ["ADMIN_TOKEN"]
READ_TOKEN = os.environ["READ_TOKEN"]
SDK_KEY = os.environ["SDK_KEY"]
PRODUCTION_SDK_KEY = os.environ["PRODUCTION_SDK_KEY"]
REPORTER_KEY = os.environ["REPORTER_KEY"]
SCREENSHOTS = os.environ["SCREENSHOTS"]
RAMP = "/ui/ramps/staging/checkout-v2"


def eventually(what, check, deadline=30.0):
    """Polls `check` until it returns a truthy value or the deadline passes."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - reported if the deadline passes
            last = error
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def request(method, url, body=None, headers=None):
    """An HTTP request outside the browser: (status, headers, text)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def ofrep(flag, context, key=SDK_KEY):
    status, _, text = request(
        "POST",
        f"{HTTP}/ofrep/v1/evaluate/flags/{flag}",
        json.dumps({"context": context}),
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    return status, json.loads(text)


def admin_api(method, path, body=None):
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    status, _, text = request(method, f"{ADMIN}{path}", json.dumps(body) if body is not None else None, headers)
    return status, (json.loads(text) if text else None)


def browser():
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--lang=en-US"):
        options.add_argument(argument)
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


class Dashboard(PageChecks):
    def __init__(self, driver):
        self.driver = driver
        self.audited = []

    def go(self, path):
        self.driver.get(ADMIN + path)

    def text(self, selector):
        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def exists(self, selector):
        return len(self.driver.find_elements(By.CSS_SELECTOR, selector)) > 0

    def sign_in(self, token):
        self.go("/ui/")
        eventually("the sign-in form", lambda: self.exists("#token"))
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "section.sign-in button[type=submit]").click()
        eventually("the overview", lambda: self.driver.current_url.endswith("/ui/") and self.exists("#environments"))

    def sign_out(self):
        self.driver.find_element(By.CSS_SELECTOR, ".who button[type=submit]").click()
        eventually("the sign-in page", lambda: "/ui/sign-in" in self.driver.current_url)

    def cookie(self):
        return self.driver.get_cookie("rampart_session")

    def mark(self):
        """Marks the loaded document: a full reload loses the mark."""
        self.driver.execute_script("window.rampartMark = 'still here';")

    def marked(self):
        return self.driver.execute_script("return window.rampartMark") == "still here"

    def confirm(self, reason):
        """Answers the confirmation dialog with a reason."""
        eventually("the confirmation dialog", lambda: self.driver.find_element(By.ID, "confirm-dialog").is_displayed())
        field = self.driver.find_element(By.ID, "confirm-reason")
        field.clear()
        field.send_keys(reason)
        self.driver.find_element(By.ID, "confirm-yes").click()


def sign_in_and_roles(ui):
    ui.go("/ui/")
    eventually("the redirect to sign-in", lambda: "/ui/sign-in" in ui.driver.current_url)
    ui.check_page("sign-in")
    # A wrong token is refused on the form.
    ui.driver.find_element(By.ID, "token").send_keys("not-a-token-at-all")
    ui.driver.find_element(By.CSS_SELECTOR, "section.sign-in button[type=submit]").click()
    eventually("the refusal", lambda: "not a valid admin token" in ui.text("#sign-in-error"))

    # The read token sees everything and no mutating controls.
    ui.sign_in(READ_TOKEN)
    cookie = ui.cookie()
    assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict", f"session cookie: {cookie}"
    ui.go("/ui/environments/staging/flags")
    assert ui.exists("table.flags"), "the flags table"
    assert not ui.driver.find_elements(By.XPATH, "//button[normalize-space()='Disable' or normalize-space()='Enable']"), \
        "a read token sees no kill switch"
    assert not ui.exists("a.button[href$='/new-flag']"), "a read token sees no 'New flag'"
    ui.go(RAMP)
    assert not ui.exists("#ramp-controls"), "a read token sees no ramp controls"
    csrf = ui.driver.find_element(By.CSS_SELECTOR, ".who input[name=csrf]").get_attribute("value")

    # The server refuses a read token's change even with the right form token...
    jar = f"rampart_session={cookie['value']}"
    form = {"Cookie": jar, "Content-Type": "application/x-www-form-urlencoded"}
    body = urllib.parse.urlencode({"csrf": csrf, "state": "DISABLED"})
    status, _, text = request("POST", f"{ADMIN}/ui/environments/staging/flags/new-welcome-banner/state", body, form)
    assert status == 403 and "role" in text, f"read token change: {status} {text[:300]}"
    # ...and a forged POST without it (or with another) whoever sends it.
    for forged in ({"state": "DISABLED"}, {"state": "DISABLED", "csrf": "0" * 64}):
        status, _, text = request("POST", f"{ADMIN}/ui/environments/staging/flags/new-welcome-banner/state",
                                  urllib.parse.urlencode(forged), form)
        assert status == 403 and "form token" in text, f"forged POST: {status} {text[:300]}"
    assert ofrep("new-welcome-banner", {})[1].get("reason") != "DISABLED", "nothing changed"

    # Signing out ends the session: the old cookie no longer opens a page.
    ui.sign_out()
    status, headers, _ = request("GET", f"{ADMIN}/ui/", None, {"Cookie": jar})
    assert status == 303 and "/ui/sign-in" in headers.get("Location", ""), f"after sign-out: {status}"
    log("sign-in, roles, CSRF: ok")


def kill_switch(ui):
    ui.go("/ui/environments/staging/flags")
    ui.check_page("flags")
    before = ofrep("new-welcome-banner", {"targetingKey": "user-1"})
    assert before[0] == 200 and before[1]["reason"] != "DISABLED", f"before: {before}"
    ui.driver.find_element(By.CSS_SELECTOR, "button[aria-label='Disable new-welcome-banner']").click()
    ui.confirm("incident 42: banner breaks checkout")
    eventually("OFREP to answer DISABLED",
               lambda: ofrep("new-welcome-banner", {"targetingKey": "user-1"})[1].get("reason") == "DISABLED")
    eventually("the list to show it disabled", lambda: "disabled" in ui.driver.find_element(
        By.XPATH, "//th[a[normalize-space()='new-welcome-banner']]/..").text)
    # The page says what was done, in a status region (announced).
    notice = eventually("the done message", lambda: ui.text("#notice"))
    assert "Disabled 'new-welcome-banner' in staging" in notice, notice
    assert ui.driver.find_element(By.ID, "notice").get_attribute("role") == "status"
    ui.go("/ui/environments/staging/flags")
    assert ui.text("#notice") == "", "said once: a reload does not repeat it"
    status, audit = admin_api("GET", "/admin/v1/audit?flag=new-welcome-banner")
    entry = audit["entries"][-1]
    assert entry["actor"] == "ana" and entry["action"] == "disable", entry
    assert "reason: incident 42: banner breaks checkout" in entry["changes"], entry
    log("kill switch: ok")


def type_definition(ui, targeting):
    """Replaces the form's definition with a two-variant flag and `targeting`."""
    definition = ui.driver.find_element(By.ID, "flag-definition")
    definition.clear()
    definition.send_keys(json.dumps({
        "state": "ENABLED",
        "variants": {"old": "v1", "new": "v2"},
        "defaultVariant": "old",
        "targeting": targeting,
    }, indent=2))


def create_flag(ui):
    ui.go("/ui/environments/staging/new-flag")
    ui.check_page("new-flag")
    ui.driver.find_element(By.ID, "flag-key").send_keys("pricing-page")
    type_definition(ui, {"if": [{"in_list": [{"var": "country"}, ["de", "fr"]]}, "new", "old"]})
    ui.driver.find_element(By.ID, "flag-reason").send_keys("pricing test")
    ui.driver.find_element(By.CSS_SELECTOR, "form.definition button[type=submit]").click()
    error = eventually("the inline error", lambda: ui.text("#definition-error"))
    kept = ui.driver.find_element(By.ID, "flag-reason").get_attribute("value")
    assert kept == "pricing test", f"a refused save keeps the reason typed: {kept!r}"
    assert "unknown operator 'in_list'" in error, f"the engine's error is shown: {error}"
    assert ui.driver.find_element(By.ID, "flag-definition").get_attribute("aria-invalid") == "true"
    ui.check_page("new-flag-error")
    status, _ = admin_api("GET", "/admin/v1/environments/staging/flags/pricing-page")
    assert status == 404, "an invalid flag is not stored"
    # Valid JSON Logic that could never be served: a variant that does not
    # exist, and an operator short of an argument.
    for targeting, expected in [
        ({"if": [{"in": [{"var": "country"}, ["de"]]}, "newer", "old"]}, "targeting can return 'newer'"),
        ({"if": [{"starts_with": [{"var": "email"}]}, "new", "old"]}, "'starts_with' takes 2 arguments, found 1"),
    ]:
        type_definition(ui, targeting)
        ui.driver.find_element(By.CSS_SELECTOR, "form.definition button[type=submit]").click()
        eventually(f"the engine's lint on the form: {expected}",
                   lambda: ui.exists("#definition-error") and expected in ui.text("#definition-error"))
        status, _ = admin_api("GET", "/admin/v1/environments/staging/flags/pricing-page")
        assert status == 404, "an un-servable flag is not stored"
    type_definition(ui, {"if": [{"in": [{"var": "country"}, ["de", "fr"]]}, "new", "old"]})
    ui.driver.find_element(By.CSS_SELECTOR, "form.definition button[type=submit]").click()
    eventually("the new flag's page", lambda: ui.driver.current_url.endswith("/flags/pricing-page"))
    status, flag = admin_api("GET", "/admin/v1/environments/staging/flags/pricing-page")
    assert status == 200 and flag["source"] == "api", flag
    log("create with an inline error: ok")

    # Edit: the form starts from the stored definition and keeps its version.
    ui.driver.find_element(By.XPATH, "//a[normalize-space()='Edit']").click()
    eventually("the edit form", lambda: ui.exists("#flag-definition"))
    ui.check_page("edit-flag")
    definition = ui.driver.find_element(By.ID, "flag-definition")
    text = json.loads(definition.get_attribute("value"))
    text["variants"]["new"] = "v3"
    definition.clear()
    definition.send_keys(json.dumps(text, indent=2))
    # The difference first; nothing is saved until it was seen.
    ui.driver.find_element(By.CSS_SELECTOR, "form.definition button[type=submit]").click()
    diff = eventually("the difference before saving", lambda: ui.text("#definition-diff"))
    assert '"v3"' in diff and "+ " in diff and "- " in diff, diff
    status, flag = admin_api("GET", "/admin/v1/environments/staging/flags/pricing-page")
    assert flag["version"] == 1, "reviewing saves nothing"
    ui.check_page("edit-flag-review")
    ui.driver.find_element(By.XPATH, "//button[normalize-space()='Save this change']").click()
    eventually("the flag page after the edit", lambda: ui.driver.current_url.endswith("/flags/pricing-page"))
    assert "Saved 'pricing-page' in staging" in eventually("the done message", lambda: ui.text("#notice"))
    status, flag = admin_api("GET", "/admin/v1/environments/staging/flags/pricing-page")
    assert flag["version"] == 2 and flag["definition"]["variants"]["new"] == "v3", flag
    # History: what each version changed, and what a revert would change.
    ui.driver.find_element(By.XPATH, "//summary[normalize-space()='What v2 changed']").click()
    assert '"v3"' in ui.text("#diff-v2"), ui.text("#diff-v2")
    ui.driver.find_element(By.XPATH, "//summary[normalize-space()='What reverting to v1 changes']").click()
    assert '"v2"' in ui.text("#revert-diff-v1"), ui.text("#revert-diff-v1")

    # Promote: the difference first, then the change.
    ui.driver.find_element(By.XPATH, "//button[normalize-space()='Show the difference']").click()
    eventually("the promotion's difference", lambda: "Creates the flag in production" in ui.text("main"))
    status, _ = admin_api("GET", "/admin/v1/environments/production/flags/pricing-page")
    assert status == 404, "the difference changes nothing"
    assert '"v3"' in ui.text("#promotion-diff"), "the promotion shows the definition it writes"
    ui.check_page("promote")
    # Production is protected: the promotion asks for the flag's name.
    assert ui.exists("#promote-typed"), "type-to-confirm in production"
    ui.driver.find_element(By.ID, "promote-typed").send_keys("pricing-page")
    ui.driver.find_element(By.ID, "promote-reason").send_keys("ready for production")
    ui.driver.find_element(By.XPATH, "//button[normalize-space()='Promote to production']").click()
    eventually("the promoted flag's page", lambda: "/environments/production/flags/pricing-page" in ui.driver.current_url)
    status, promoted = admin_api("GET", "/admin/v1/environments/production/flags/pricing-page")
    assert status == 200 and promoted["definition"]["variants"]["new"] == "v3", promoted
    log("edit and promotion: ok")


def protected_production(ui):
    """In a protected environment the kill switch asks for the flag's name;
    Enter in the reason field does not confirm; the server holds the rule."""
    ui.go("/ui/environments/production/flags")
    assert "Production: production" in ui.text(".protected-banner"), "production is marked"
    before = ofrep("new-checkout", {"targetingKey": "user-1"}, PRODUCTION_SDK_KEY)
    assert before[1].get("reason") != "DISABLED", before
    ui.driver.find_element(By.CSS_SELECTOR, "button[aria-label='Disable new-checkout']").click()
    eventually("the confirmation dialog", lambda: ui.driver.find_element(By.ID, "confirm-dialog").is_displayed())
    typed = ui.driver.find_element(By.ID, "confirm-typed")
    yes = ui.driver.find_element(By.ID, "confirm-yes")
    assert typed.is_displayed() and "type new-checkout" in ui.text("#confirm-typed-label"), "asks for the name"
    assert not yes.is_enabled(), "no confirmation before the name is typed"
    reason = ui.driver.find_element(By.ID, "confirm-reason")
    reason.send_keys("incident 77\n")
    assert ui.driver.find_element(By.ID, "confirm-dialog").is_displayed(), "Enter in the reason does not confirm"
    typed.send_keys("new-checkou")
    assert not yes.is_enabled(), "a near miss does not confirm"
    typed.send_keys("t")
    assert yes.is_enabled(), "the exact name confirms"
    ui.check_page("type-to-confirm")
    ui.driver.find_element(By.ID, "confirm-yes").click()
    eventually("OFREP in production to answer DISABLED", lambda: ofrep(
        "new-checkout", {"targetingKey": "user-1"}, PRODUCTION_SDK_KEY)[1].get("reason") == "DISABLED")
    assert "Disabled 'new-checkout' in production" in eventually("the done message", lambda: ui.text("#notice"))
    # The switch back, through the dialog again.
    ui.driver.find_element(By.CSS_SELECTOR, "button[aria-label='Enable new-checkout']").click()
    eventually("the confirmation dialog", lambda: ui.driver.find_element(By.ID, "confirm-dialog").is_displayed())
    ui.driver.find_element(By.ID, "confirm-typed").send_keys("new-checkout")
    ui.driver.find_element(By.ID, "confirm-yes").click()
    eventually("OFREP in production to answer again", lambda: ofrep(
        "new-checkout", {"targetingKey": "user-1"}, PRODUCTION_SDK_KEY)[1].get("reason") != "DISABLED")
    log("type-to-confirm in production: ok")


def time_zone_switch(ui):
    ui.go("/ui/audit")
    first = ui.driver.find_element(By.CSS_SELECTOR, "#audit-entries time")
    utc = first.text
    assert utc.endswith(" UTC"), utc
    ui.driver.find_element(By.ID, "time-zone").click()
    local = ui.driver.find_element(By.CSS_SELECTOR, "#audit-entries time").text
    assert local != utc and ("UTC+" in local or "UTC-" in local), f"local time shown: {local!r}"
    assert ui.text("#time-zone") == "Times: local"
    ui.go("/ui/audit")
    assert ui.driver.find_element(By.CSS_SELECTOR, "#audit-entries time").text == local, "remembered"
    # The charts' axes follow the switch too.
    ui.go(RAMP)
    first_tick = "return document.querySelector('#ramp-charts svg text.time').textContent"
    assert "UTC+" in ui.driver.execute_script(first_tick) or "UTC-" in ui.driver.execute_script(first_tick)
    ui.driver.find_element(By.ID, "time-zone").click()
    assert ui.driver.execute_script(first_tick).endswith(" UTC"), ui.driver.execute_script(first_tick)
    ui.go("/ui/audit")
    assert ui.driver.find_element(By.CSS_SELECTOR, "#audit-entries time").text == utc
    log("UTC and local times, charts included: ok")


def console(ui):
    ui.go("/ui/environments/staging/flags/pricing-page")
    for context in ({"targetingKey": "user-7", "country": "de"}, {"targetingKey": "user-8", "country": "us"}, {}):
        field = ui.driver.find_element(By.ID, "console-context")
        field.clear()
        field.send_keys(json.dumps(context))
        ui.mark()
        ui.driver.find_element(By.CSS_SELECTOR, "#console-context ~ button[type=submit]").click()
        # The answer of the page this submission loads, not the previous one.
        shown = json.loads(eventually("the console's answer",
                                      lambda: not ui.marked() and ui.text("#console-json")))
        status, answer = ofrep("pricing-page", context)
        assert status == 200 and shown == answer, f"console {shown} != OFREP {answer} for {context}"
    ui.check_page("flag")
    log("evaluation console equals OFREP: ok")


def usage_counts(ui):
    """The flag page's usage equals the evaluations applications made."""
    status, before = admin_api("GET", "/admin/v1/environments/staging/flags/pricing-page/usage")
    assert status == 200, before
    sent = {"new": 0, "old": 0}
    for index in range(12):
        country = "de" if index % 3 else "us"
        status, answer = ofrep("pricing-page", {"targetingKey": f"user-{index}", "country": country})
        assert status == 200, answer
        sent[answer["variant"]] += 1
    ui.go("/ui/environments/staging/flags/pricing-page")
    for variant, count in sent.items():
        expected = before["last24h"].get("evaluated", {}).get(variant, 0) + count
        shown = ui.text(f"#flag-usage td[data-usage='evaluated:{variant}:24h']")
        assert shown == str(expected), f"{variant}: the page shows {shown}, applications made {expected}"
    assert "Last evaluated" in ui.text("#flag-usage")
    ui.go("/ui/environments/staging/ready-to-remove")
    assert "pricing-page" not in ui.text("#removable"), "a flag in use is not listed"
    ui.go("/ui/environments/production/ready-to-remove")
    removable = ui.text("#removable")
    assert "pricing-page — no evaluation counted yet" in removable, f"a flag nobody evaluates is: {removable}"
    assert "new-search" not in removable, "nor a flag a ramp (its release's pending stage) drives"
    ui.check_page("ready-to-remove")
    log(f"usage equals the evaluations sent ({sent}): ok")


def live_flag(ui):
    ui.go("/ui/environments/staging/flags/pricing-page")
    eventually("the live stream", lambda: ui.driver.execute_script("return document.body.dataset.live") == "connected")
    ui.mark()
    status, _ = admin_api("PATCH", "/admin/v1/environments/staging/flags/pricing-page", {"state": "DISABLED"})
    assert status == 200
    started = time.monotonic()
    eventually("the page to show the flag disabled",
               lambda: "disabled" in ui.text("#flag-state .facts"), deadline=2.0)
    took = time.monotonic() - started
    assert ui.marked(), "updated without a reload"
    log(f"flag page followed a change made elsewhere in {took * 1000:.0f} ms: ok")


def overview_and_audit(ui):
    ui.go("/ui/")
    assert "rejected" not in ui.text("#environments") or True
    ui.check_page("overview")
    ui.go("/ui/audit")
    assert "incident 42" in ui.text("#audit-entries"), "the reason is in the audit log"
    ui.check_page("audit")
    ui.go("/ui/audit?actor=nobody")
    assert "No entries." in ui.text("#audit-entries"), "filters apply"
    ui.go("/ui/audit?action=disable")
    rows = ui.driver.find_elements(By.CSS_SELECTOR, "#audit-entries tbody tr")
    assert rows and all("disable" in row.text for row in rows), "by action"
    ui.go("/ui/audit?since=2000-01-01&until=2000-01-02")
    assert "No entries." in ui.text("#audit-entries"), "by time range"
    ui.go("/ui/environments/staging/flags/no-such-flag")
    assert "No such flag" in ui.text("h1")
    ui.check_page("not-found")


class Outcomes:
    """Posts outcomes like a fleet's reporters, following the ramp's percent
    (with a reporter key: SDK keys do not feed ramps)."""

    def __init__(self):
        self.treatment_errors = 0.0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            status, ramp = admin_api("GET", "/admin/v1/ramps/staging/checkout-v2")
            percent = ramp.get("percent", 0) if status == 200 else 0
            treatment = int(40 * percent / 100)
            control = 40 - treatment
            errors = int(treatment * self.treatment_errors)
            body = {"outcomes": [
                {"flag": "new-checkout", "variant": "on", "ok": treatment - errors, "error": errors},
                {"flag": "new-checkout", "variant": "off", "ok": control, "error": 0},
            ]}
            request("POST", f"{HTTP}/v1/outcomes", json.dumps(body),
                    {"Authorization": f"Bearer {REPORTER_KEY}", "Content-Type": "application/json"})
            time.sleep(0.1)


def live_ramp(ui):
    ui.go(RAMP)
    eventually("the live stream", lambda: ui.driver.execute_script("return document.body.dataset.live") == "connected")
    ui.mark()
    first = ui.text("#ramp-percent")
    outcomes = Outcomes()
    try:
        eventually("an advance shown without reload",
                   lambda: ui.text("#ramp-percent") not in (first, "0 %") and "advanced" in ui.text("#ramp-timeline"),
                   deadline=60)
        assert ui.marked(), "the ramp page followed the advance without a reload"
        eventually("the charts to have points", lambda: ui.exists("#chart-exposure path.line"))
        settings = ui.text("#ramp-settings")
        for expected in ("maxErrorRate 20 %", "every 1s", "10 % (hold 2s, 40 samples)", "Europe/Paris", "revision"):
            assert expected in settings, f"{expected!r} in the settings: {settings}"
        estimate = eventually("an estimate from the traffic seen",
                              lambda: ui.exists("#ramp-estimate table") and ui.text("#ramp-estimate"))
        assert "the ramp can complete in about" in estimate or "would not complete" in estimate, estimate
        assert "Started" in ui.text("#ramp-times") and "since" in ui.text("#ramp-times")
        states = ui.driver.find_elements(By.CSS_SELECTOR, "#ramp-status .badge")
        assert len([b for b in states if b.text.startswith(("Ramping", "Holding", "Paused"))]) == 1, \
            "one state label"
        ui.check_page("ramp")
        outcomes.treatment_errors = 0.6
        eventually("the rollback shown without reload", lambda: ui.exists(".rollback"), deadline=60)
        assert ui.marked(), "the ramp page followed the rollback without a reload"
        assert "Rolled back to 0 %" in ui.text(".rollback"), "unmistakable"
        assert ui.text("#ramp-percent") == "0 %"
        # What an incident review needs stays on the page, and reads true.
        eventually("the final evidence kept", lambda: ui.exists("#final-evidence"))
        assert "Treatment" in ui.text("#ramp-evidence"), "the final counts are shown"
        assert ui.exists("ol.ladder li.failed"), "the step rolled back from is marked failed"
        failed = ui.text("ol.ladder li.failed")
        assert "rolled back" in failed, failed
        assert not ui.driver.execute_script(
            "return [...document.querySelectorAll('ol.ladder li.done')].some(li => li.textContent.includes('rolled back'))"
        ), "a rolled-back step is not shown done"
        # One time axis: the four charts begin with the same tick.
        firsts = ui.driver.execute_script(
            "return [...document.querySelectorAll('#ramp-charts svg')].map(svg => (svg.querySelector('text.time') || {}).textContent)"
        )
        assert len(firsts) >= 3 and len(set(firsts)) == 1 and firsts[0], firsts
        assert "maxErrorRate 20 %" in ui.text("#chart-errors"), "the ceiling is drawn"
        assert ui.exists("#chart-errors line.marker-step"), "step boundaries are drawn"
        assert ui.exists("#chart-errors line.marker"), "and the rollback"
        ui.check_page("ramp-rolled-back")
    finally:
        outcomes.stop = True
    ui.go("/ui/ramps")
    ui.check_page("ramps")
    log("ramp page followed an advance and a rollback: ok")


def main():
    os.makedirs(SCREENSHOTS, exist_ok=True)
    driver = browser()
    ui = Dashboard(driver)
    try:
        sign_in_and_roles(ui)
        ui.sign_in(ADMIN_TOKEN)
        kill_switch(ui)
        create_flag(ui)
        console(ui)
        usage_counts(ui)
        live_flag(ui)
        overview_and_audit(ui)
        live_ramp(ui)
        protected_production(ui)
        time_zone_switch(ui)
        log(f"axe-core: no violations on {len(ui.audited)} pages at 1440 and 390 px, none wider than the window: "
            f"{', '.join(ui.audited)}")
    except Exception:
        try:
            driver.save_screenshot(os.path.join(SCREENSHOTS, "failure.png"))
            print(driver.page_source[:4000], file=sys.stderr)
        finally:
            raise
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
