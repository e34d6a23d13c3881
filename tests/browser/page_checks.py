"""What every dashboard page must be, checked in the real browser at
desktop and phone width: axe-core with zero violations, no wider than the
window, stacked table cells labelled, chart text at least 11 px; and a
screenshot of each. Mixed into `dashboard.py`'s `Dashboard` (which has
`self.driver` and `self.audited`).

  AXE           path of axe-core's axe.min.js
  SCREENSHOTS   directory for the PNGs
"""

import json
import os

DESKTOP = (1440, 900)
PHONE = (390, 844)
SCREENSHOTS = os.environ["SCREENSHOTS"]
AXE = open(os.environ["AXE"], encoding="utf-8").read()


def log(message):
    print(message, flush=True)


class PageChecks:
    def shot(self, name, width=DESKTOP[0]):
        path = os.path.join(SCREENSHOTS, f"{name}.png")
        # The whole page, not just the window.
        self.driver.set_window_size(width, 900)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(width, max(900, min(height + 40, 6000)))
        self.driver.save_screenshot(path)
        self.driver.set_window_size(*DESKTOP)
        log(f"screenshot {path}")

    def axe(self, name):
        """axe-core on the current page: no violation of any impact."""
        self.driver.execute_script(AXE)
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => "
            "({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));"
        )
        log(f"axe {name}: {len(result)} violations")
        if result:
            raise AssertionError(f"axe violations on {name}: {json.dumps(result, indent=1)}")

    def fits(self, name):
        """The page scrolls only downwards: the document is no wider than the window."""
        wide = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth,"
            " [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
            ".slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className)]")
        if wide[0] > wide[1] + 1:
            raise AssertionError(f"{name} is {wide[0]} px wide in a {wide[1]} px window: {wide[2]}")
        # Stacked tables (phones) keep their labels: every cell names its column.
        unlabelled = self.driver.execute_script(
            "return [...document.querySelectorAll('main table td:not([data-label])')].slice(0, 3).map(td => td.outerHTML)")
        if unlabelled:
            raise AssertionError(f"{name}: table cells without a label when stacked: {unlabelled}")

    def chart_text(self, name):
        """Chart text is drawn at least 11 px high."""
        smallest = self.driver.execute_script(
            "const sizes = [...document.querySelectorAll('svg text')].map(t => t.getBoundingClientRect().height)"
            ".filter(h => h > 0); return sizes.length ? Math.min(...sizes) : null;")
        if smallest is not None and smallest < 11:
            raise AssertionError(f"chart text on {name} is drawn {smallest:.1f} px high (< 11 px)")

    def check_page(self, name):
        """axe-core (zero violations), width and chart text at desktop and
        phone width; a screenshot of each."""
        url = self.driver.current_url
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            self.driver.set_window_size(*size)
            if self.driver.current_url != url:
                self.driver.get(url)
            self.axe(f"{name} ({label})")
            self.fits(f"{name} ({label})")
            self.chart_text(f"{name} ({label})")
        self.driver.set_window_size(*DESKTOP)
        self.audited.append(name)
        self.shot(name)
        self.shot(f"{name}-phone", width=PHONE[0])
