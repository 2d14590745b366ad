"""Open every page of the built book in headless Chromium and check what a reader would see.

    python tools/check_book.py [--html book/_build/html] [--screenshots book/_build/screenshots]

(`make check-book` runs it after `make book`.) The HTML is served on 127.0.0.1 and the
browser is kept offline (every other host name fails to resolve), as a reader without
network, or a CI machine, would load it. For every page it asserts

* no JavaScript errors (uncaught exceptions, failed scripts, console errors);
* every image loaded (``naturalWidth > 0``);
* no error output, traceback, warning, stderr stream or machine path (``/root``, ``/home``,
  ``/tmp/ipykernel``, ``/work``) in the cells' outputs;
* every formula typeset by MathJax (served by the book itself, not by a CDN);
* every widget area carries the note of ``book/_ext`` (the widgets need a kernel);
* every internal link points at an existing page and, with a ``#fragment``, an existing id;

and saves a screenshot of every page under ``--screenshots`` (plus ``report.json``). The only
requests allowed to leave the machine are the ipywidgets manager's scripts from its CDN: the
widget areas are optional there (each has a static figure after it), and blocked offline.

Needs ``selenium`` (the ``[browser]`` extra) and a Chromium with its chromedriver: Debian's
``chromium`` and ``chromium-driver`` packages, or any ``chromedriver`` on ``PATH`` (or in
``$CHROMEWEBDRIVER``, as on GitHub's runners) with its browser.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[1]

# Scripts a page may try to fetch from the network and do without: the ipywidgets manager
# (require.js + @jupyter-widgets/html-manager), which myst-nb loads from CDNs for pages with
# widgets. Offline the widget areas show the note of book/_ext/gsa_book.py instead.
ALLOWED_EXTERNAL = (
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/",
    "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager",
    "https://unpkg.com/@jupyter-widgets/html-manager",
)
MACHINE_PATH = re.compile(r"(/root/|/home/|/tmp/ipykernel|/work/|[A-Z]:\\Users\\)")
# A traceback or a warning in an output. An exception a chapter catches and prints on
# purpose ("AssertionError: ... is not r4-equivariant") is text, not an error output.
PROBLEM_TEXT = re.compile(r"(Traceback \(most recent call last\)|\b\w*Warning:\s)")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1600",
    # Offline: only the local server resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)

# Runs before any script of the page: collects uncaught errors, rejected promises, and
# elements (scripts, images, stylesheets) that failed to load.
COLLECT_ERRORS = """
window.__gsaErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) {
    var url = t.src || t.href;  // an SVG element's href is an SVGAnimatedString
    window.__gsaErrors.push({kind: 'resource', url: String(url.baseVal !== undefined ? url.baseVal : url), tag: String(t.tagName)});
  } else {
    window.__gsaErrors.push({kind: 'exception', message: String(e.message), where: (e.filename || '') + ':' + (e.lineno || '')});
  }
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__gsaErrors.push({kind: 'exception', message: 'unhandled rejection: ' + String(e.reason)});
});
"""

# Waits for the page to settle: load event, MathJax typesetting, the images.
SETTLE = """
var done = arguments[arguments.length - 1];
function images() {
  var pending = Array.from(document.images).filter(function (i) { return !i.complete; });
  return Promise.all(pending.map(function (i) {
    return new Promise(function (r) { i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 10000); });
  }));
}
Array.from(document.images).forEach(function (i) { i.loading = 'eager'; });
var mj = (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) || Promise.resolve();
Promise.all([mj, images()]).then(function () { setTimeout(function () { done(true); }, 300); },
                                  function (e) { done('MathJax failed: ' + e); });
"""

# What the page shows, read after it settled.
INSPECT = """
function text(el) { return (el.innerText || el.textContent || '').trim(); }
var outputs = Array.from(document.querySelectorAll('.cell_output'));
var report = {
  title: document.title,
  errors: window.__gsaErrors || [],
  images: Array.from(document.images).map(function (i) {
    return {src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0};
  }),
  math: Array.from(document.querySelectorAll('.math')).map(function (m) {
    return {tex: text(m).slice(0, 60), typeset: m.querySelector('mjx-container') !== null};
  }),
  outputs: outputs.length,
  bad_outputs: [],
  widgets: [],
  links: Array.from(document.querySelectorAll('a[href]')).map(function (a) { return a.getAttribute('href'); }),
  mathjax_src: Array.from(document.scripts).map(function (s) { return s.src; }).filter(function (s) { return /mathjax/i.test(s); }),
};
outputs.forEach(function (o, i) {
  var kinds = [];
  if (o.querySelector('.traceback, .output.error')) kinds.push('error output');
  if (o.querySelector('.stderr')) kinds.push('stderr');
  report.bad_outputs.push({index: i, kinds: kinds, text: text(o).slice(0, 4000)});
});
document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').forEach(function (s) {
  var area = s.parentElement;
  report.widgets.push({note: !!(area && area.querySelector('.gsa-widget-note')),
                       rendered: !!(area && area.querySelector('.widget-subarea *, .jupyter-widgets'))});
});
return JSON.stringify(report);  // plain JSON: DOM values never reach the driver
"""


# ---------------------------------------------------------------------------------------
# Serving, pages, links
# ---------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    socketserver.TCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


def book_pages(folder: Path) -> list[Path]:
    """Every HTML page of the build (not the copies of sources and static files)."""
    skip = {"_static", "_sources", "_images", "_downloads", "_panels_static"}
    pages = [p for p in folder.rglob("*.html") if not skip & set(p.relative_to(folder).parts)]
    return sorted(pages, key=lambda p: str(p.relative_to(folder)))


class _Ids(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.cache
def page_ids(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


def broken_links(folder: Path, page: Path, hrefs: list[str]) -> list[str]:
    """Internal links of ``page`` whose file or ``#fragment`` does not exist in the build."""
    base = "http://book.local/" + page.relative_to(folder).as_posix()
    broken = []
    for href in sorted(set(hrefs)):
        if href.startswith(("mailto:", "javascript:", "data:")):
            continue
        url = urlsplit(urljoin(base, href))
        if url.netloc != "book.local":
            continue  # an external link: not followed (the check is offline)
        target = folder / unquote(url.path.lstrip("/"))
        if target.is_dir() or url.path.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href} (no file {target.relative_to(folder)})")
        elif url.fragment and target.suffix == ".html" and unquote(url.fragment) not in page_ids(target):
            broken.append(f"{href} (no id {url.fragment!r} in {target.relative_to(folder)})")
    return broken


# ---------------------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------------------


def find_chromium() -> tuple[str | None, str | None]:
    """(browser binary, chromedriver) found on this machine; None where not found."""
    browser = os.environ.get("CHROME_BIN") or next(
        (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable") if shutil.which(b)),
        None,
    )
    driver = shutil.which("chromedriver")
    if driver is None and os.environ.get("CHROMEWEBDRIVER"):
        candidate = Path(os.environ["CHROMEWEBDRIVER"]) / "chromedriver"
        driver = str(candidate) if candidate.is_file() else None
    return browser, driver


def start_browser() -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise SystemExit("check_book needs selenium: pip install -e '.[browser]' (make check-book installs it)") from None
    browser, driver = find_chromium()
    if browser is None or driver is None:
        raise SystemExit(
            f"check_book needs Chromium and its chromedriver (found browser {browser}, driver {driver}): "
            "apt-get install chromium chromium-driver (make check-book does it), or set CHROME_BIN"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def screenshot(driver: Any, path: Path, max_height: int = 12000) -> None:
    """A full-page PNG (cut at ``max_height`` CSS pixels) through the DevTools protocol."""
    import base64

    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))


# ---------------------------------------------------------------------------------------
# Checking one page
# ---------------------------------------------------------------------------------------


def external(url: str, base: str) -> bool:
    return bool(url) and not url.startswith(base) and urlsplit(url).scheme in ("http", "https")


def problems_of(report: dict[str, Any], console: list[dict[str, Any]], base: str) -> tuple[list[str], list[str]]:
    """(problems, blocked optional requests) of one page's inspection."""
    problems, blocked = [], []
    for error in report["errors"]:
        if error["kind"] == "resource":
            url = error["url"]
            if external(url, base) and url.startswith(ALLOWED_EXTERNAL):
                blocked.append(url)
            else:
                problems.append(f"failed to load {error['tag'].lower()} {url}")
        else:
            problems.append(f"JavaScript error: {error['message']} ({error.get('where', '')})")
    for entry in console:
        if entry.get("level") != "SEVERE":
            continue
        message = entry.get("message", "")
        urls = re.findall(r"https?://\S+", message)
        if urls and all(external(u, base) and u.startswith(ALLOWED_EXTERNAL) for u in urls):
            continue  # the optional widget scripts, blocked offline (counted above)
        if all(u.startswith(base + "favicon.ico") for u in urls) and urls:
            continue  # the browser asks for /favicon.ico by itself; the book has none
        if "Failed to load resource" in message and any(u.startswith(base) for u in urls):
            problems.append(f"console: {message}")
        elif "Failed to load resource" not in message:
            problems.append(f"console error: {message}")
        elif not urls:
            problems.append(f"console: {message}")
    for image in report["images"]:
        if not image["ok"]:
            problems.append(f"image not loaded: {image['src']}")
    untypeset = [m["tex"] for m in report["math"] if not m["typeset"]]
    if untypeset:
        problems.append(f"{len(untypeset)} formulas not typeset by MathJax, e.g. {untypeset[0]!r}")
    if report["math"] and any(external(src, base) for src in report["mathjax_src"]):
        problems.append(f"MathJax comes from the network: {report['mathjax_src']}")
    for output in report["bad_outputs"]:
        found = list(output["kinds"])
        if MACHINE_PATH.search(output["text"]):
            found.append(f"machine path {MACHINE_PATH.search(output['text']).group(0)!r}")  # type: ignore[union-attr]
        match = PROBLEM_TEXT.search(output["text"])
        if match:
            found.append(f"{match.group(1).strip()!r}")
        if found:
            excerpt = " ".join(output["text"].split())[:160]
            problems.append(f"cell output {output['index']}: {', '.join(found)}: {excerpt}")
    missing_notes = sum(not w["note"] for w in report["widgets"])
    if missing_notes:
        problems.append(f"{missing_notes} widget areas without the note of book/_ext/gsa_book.py")
    return problems, blocked


def check(html_dir: Path, shots: Path, *, pages: list[str] | None = None) -> dict[str, Any]:
    all_pages = book_pages(html_dir)
    if not all_pages:
        raise SystemExit(f"no HTML pages in {html_dir}: run `make book` first")
    chosen = [p for p in all_pages if pages is None or p.relative_to(html_dir).as_posix() in pages]
    shots.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with serve(html_dir) as base:
        driver = start_browser()
        try:
            driver.set_script_timeout(60)
            driver.set_page_load_timeout(60)
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": COLLECT_ERRORS})
            for page in chosen:
                rel = page.relative_to(html_dir).as_posix()
                t0 = time.time()
                driver.get(base + rel)
                settled = driver.execute_async_script(SETTLE)
                landed = urlsplit(driver.current_url).path.lstrip("/")  # index.html redirects to the first page
                if landed and landed != rel and (html_dir / unquote(landed)).is_file():
                    page = html_dir / unquote(landed)
                report = json.loads(driver.execute_script(INSPECT))
                console = driver.get_log("browser")
                problems, blocked = problems_of(report, console, base)
                if settled is not True:
                    problems.append(str(settled))
                problems += [f"broken link {link}" for link in broken_links(html_dir, page, report["links"])]
                shot = shots / (rel.removesuffix(".html").replace("/", "__") + ".png")
                screenshot(driver, shot)
                results[rel] = {
                    "title": report["title"],
                    "ok": not problems,
                    "problems": problems,
                    "images": len(report["images"]),
                    "formulas": len(report["math"]),
                    "outputs": report["outputs"],
                    "widgets": len(report["widgets"]),
                    "links": len(set(report["links"])),
                    "blocked_optional_requests": sorted(set(blocked)),
                    "screenshot": str(shot),
                    "seconds": round(time.time() - t0, 2),
                }
        finally:
            driver.quit()
    (shots / "report.json").write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "book" / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "book" / "_build" / "screenshots")
    parser.add_argument("--page", action="append", default=None, help="check only this page (e.g. intro.html); repeatable")
    args = parser.parse_args(argv)
    results = check(args.html, args.screenshots, pages=args.page)
    width = max(len(rel) for rel in results)
    print(f"{'page':<{width}}  result  images formulas outputs widgets links  seconds")
    for rel, r in results.items():
        status = "ok" if r["ok"] else "FAIL"
        print(f"{rel:<{width}}  {status:<6}  {r['images']:>6} {r['formulas']:>8} {r['outputs']:>7} {r['widgets']:>7} {r['links']:>5}  {r['seconds']:>7.1f}")
        for problem in r["problems"]:
            print(f"    - {problem}")
    failed = [rel for rel, r in results.items() if not r["ok"]]
    blocked = sorted({u for r in results.values() for u in r["blocked_optional_requests"]})
    if blocked:
        print(f"optional requests blocked offline (widget manager; the static figures stand in): {', '.join(blocked)}")
    print(f"{len(results) - len(failed)}/{len(results)} pages ok; screenshots and report.json in {args.screenshots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
