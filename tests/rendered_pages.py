"""Read the built chapter pages in headless Chromium, as a reader does, and list what a reader would trip over.

:func:`page_problems` loads one page of a built book (served over HTTP from its ``html`` folder), waits for
MathJax, and returns one message per problem: math that MathJax did not typeset or typeset with an error, a table
or display formula wider than the text column, a visible code cell that scrolls sideways, a table whose columns touch,
an image outside a captioned figure or below retina resolution,
other than one search box, progress-bar residue (widget outputs or tqdm text), a "nan" table cell, a Markdown table
printed as text, a missing claims table, or a Colab link that does not open the chapter's ``.ipynb``.
``tests/test_notebooks.py`` runs it on every chapter of the ``ci`` build; run it on any other build (for instance
``make book``'s, built with the local MathJax of ``sphinx-mathjax-offline``) with ``python tests/rendered_pages.py
_build/html``.

The browser is the system's Chromium and its driver (Debian's ``chromium`` and ``chromium-driver``, which
``.ci/run`` installs); nothing is downloaded.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Every fact the checks need, gathered in the page once MathJax has finished (or failed to load).
FACTS_JS = r"""
const done = arguments[arguments.length - 1];
const article = document.querySelector("article.bd-article") || document.body;
const describe = (el) => (el.id ? "#" + el.id + " " : "") + el.textContent.trim().replace(/\s+/g, " ").slice(0, 80);
const visibleSearchBoxes = () => [...document.querySelectorAll(
  ".search-button__button, #searchbox input, form.bd-search")].filter((el) => el.offsetParent !== null).length;
let gathered = false;
const gather = (mathjaxError) => {
  if (gathered) return;
  gathered = true;
  const column = article.getBoundingClientRect().width;
  const output = (el) => el.closest(".cell_output, .output") !== null;
  const facts = {
    mathjax_loaded: typeof window.MathJax !== "undefined" && window.MathJax.startup !== undefined,
    mathjax_error: mathjaxError,
    math_total: article.querySelectorAll(".math").length,
    math_untypeset: [...article.querySelectorAll(".math")].filter((el) => !el.querySelector("mjx-container"))
      .map((el) => el.textContent.trim().slice(0, 60)),
    math_errors: [...article.querySelectorAll("mjx-merror, merror, [data-mjx-error]")]
      .map((el) => (el.getAttribute("data-mjx-error") || el.textContent).slice(0, 80)),
    column_width: column,
    wide_tables: [...article.querySelectorAll("table")].map((t) => [t, t.getBoundingClientRect().width])
      .filter(([t, w]) => w > column + 1)
      .map(([t, w]) => `${Math.round(w)} px: ${describe(t.querySelector("caption, thead, tr") || t)}`),
    // Display math wider than the column is cut off or scrolls; the TeX source names it.
    wide_math: [...article.querySelectorAll("mjx-container[display='true']")]
      .filter((m) => m.scrollWidth > m.clientWidth + 1
                     || (m.querySelector("mjx-math") || m).getBoundingClientRect().width > column + 1)
      .map((m) => { let tex = "";
                    try { tex = MathJax.startup.document.getMathItemsWithin(m)[0].math; } catch (e) { tex = ""; }
                    return `${Math.round((m.querySelector("mjx-math") || m).getBoundingClientRect().width)} px: `
                           + tex.trim().replace(/\s+/g, " ").slice(0, 80); }),
    // Retina PNG (twice the pixels of its place on the page) or SVG; the Colab badge is the one exception.
    low_res_images: [...article.querySelectorAll("img")]
      .filter((img) => !img.closest("a[href^='https://colab.research.google.com/']") && !/\.svg/.test(img.src))
      .filter((img) => img.naturalWidth < 2 * img.getBoundingClientRect().width - 1)
      .map((img) => `${img.src.split("/").pop()}: ${img.naturalWidth} px shown at `
                    + `${Math.round(img.getBoundingClientRect().width)} px`),
    // A visible code cell (not folded away by hide-input) that scrolls sideways: lines wider than the column.
    wide_code: [...article.querySelectorAll(".cell_input pre")]
      .filter((pre) => !(pre.closest("details") && !pre.closest("details").open))  // folded by hide-input
      .filter((pre) => pre.offsetParent !== null && pre.scrollWidth > pre.clientWidth + 1)
      .map((pre) => `${pre.scrollWidth} px: ${pre.textContent.split("\n")
        .reduce((a, b) => (b.length > a.length ? b : a), "").trim().slice(0, 60)}`),
    // Table cells whose columns touch: less than 4 px of padding on each side.
    tight_tables: [...article.querySelectorAll(".cell_output table")]
      .filter((t) => [...t.querySelectorAll("td, th")].some((c) => { const s = getComputedStyle(c);
        return parseFloat(s.paddingLeft) < 4 || parseFloat(s.paddingRight) < 4; }))
      .map((t) => describe(t.querySelector("caption, thead, tr") || t)),
    search_boxes: visibleSearchBoxes(),
    loose_images: [...article.querySelectorAll("img")]
      .filter((img) => !img.closest("a[href^='https://colab.research.google.com/']"))
      .filter((img) => { const f = img.closest("figure"); const c = f && f.querySelector("figcaption");
                         return !(c && c.textContent.trim()); })
      .map((img) => { const cell = img.closest(".cell"); const prev = cell && cell.previousElementSibling;
                      return `image after "${prev ? describe(prev).slice(0, 60) : "?"}"`; }),
    widgets: article.querySelectorAll(
      "script[type='application/vnd.jupyter.widget-view+json'], .jupyter-widgets, .widget-html-content").length,
    widget_manager: [...document.querySelectorAll("script[src]")].map((s) => s.src)
      .filter((src) => /jupyter-widgets|require\.js|require\.min\.js/.test(src)),
    tqdm_text: [...article.querySelectorAll("pre, p, div.output")].filter(output)
      .map((el) => el.textContent).filter((t) => /\d+%\|/.test(t) || /\d+(\.\d+)?(it|s)\/(s|it)\]/.test(t))
      .map((t) => t.trim().slice(0, 80)),
    nan_cells: [...article.querySelectorAll("td, th")]
      .filter((c) => /(^|[^A-Za-z])nan([^A-Za-z]|$)/i.test(c.textContent))
      .map((c) => `"${c.textContent.trim().slice(0, 40)}" in `
                  + describe(c.closest("table").querySelector("caption, thead, tr"))),
    // A Markdown table is recognised by its separator row (|---|---|, dashes that Sphinx may render as —).
    markdown_tables: [...article.querySelectorAll("p, .cell_output pre, .output pre")]
      .map((el) => el.textContent)
      .filter((t) => t.split("\n").some((l) => /^[\s|:\-—–]+$/.test(l) && /[-—–]/.test(l)
                                            && (l.match(/\|/g) || []).length >= 2))
      .map((t) => t.trim().slice(0, 80)),
    // TeX a reader sees as source: "$\widehat R$" or "\(x\)" in text outside code and typeset math.
    raw_tex: (() => {
      const found = [];
      const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {acceptNode: (node) =>
        node.parentElement.closest("code, pre, script, style, mjx-container, .math, .highlight, .cell_input")
          ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
      while (walker.nextNode()) {
        const text = walker.currentNode.textContent;
        const match = text.match(/\$[^$\n]{0,80}?\\[A-Za-z]+|\\[()[\]]/);
        if (match) found.push(text.trim().slice(Math.max(0, match.index - 20), match.index + 40));
      }
      return found;
    })(),
    figure_numbers: [...article.querySelectorAll("figure .caption-number")].map((el) => el.textContent.trim()),
    title_number: (document.querySelector("article h1 .section-number") || {textContent: ""}).textContent.trim(),
    claims_tables: article.querySelectorAll("table.claims-table").length,
    colab_links: [...document.querySelectorAll("a[href*='colab.research.google.com']")].map((a) => a.href),
  };
  done(facts);
};
const TYPESET_SECONDS = 240;
const images = [...document.querySelectorAll("img")];
images.forEach((img) => { img.loading = "eager"; });
// MathJax is loaded asynchronously: give it up to 30 s to define its start-up promise before calling it missing.
// Sphinx adds MathJax only to pages with math; a page without both has nothing to wait for.
const started = Date.now();
const needsMathJax = document.querySelector("script[src*='mathjax' i]") !== null
  || article.querySelector(".math") !== null;
const whenMathJax = () => {
  if (!needsMathJax) {
    gather(null);
  } else if (typeof window.MathJax !== "undefined" && window.MathJax.startup && window.MathJax.startup.promise) {
    window.MathJax.startup.promise.then(() => gather(null), (e) => gather(String(e)));
    // Typesetting a long page on a loaded machine can take minutes; a page that never finishes is reported.
    setTimeout(() => gather(`MathJax did not finish typesetting within ${TYPESET_SECONDS} s`), TYPESET_SECONDS * 1000);
  } else if (Date.now() - started > 30000) {
    gather("MathJax did not load");
  } else {
    setTimeout(whenMathJax, 100);
  }
};
// On a loaded machine the theme's header can be laid out after the load event: give the search box up to 10 s.
const whenLaidOut = () => {
  if (visibleSearchBoxes() > 0 || Date.now() - started > 10000) whenMathJax(); else setTimeout(whenLaidOut, 100);
};
// An image that never decodes (or a decode that never settles) must not stall the check: 20 s at most.
const decoded = (img) => Promise.race([img.decode().catch(() => null),
                                       new Promise((resolve) => setTimeout(resolve, 20000))]);
Promise.all(images.map(decoded)).then(whenLaidOut);
"""


def chromium_driver():
    """A headless Chromium driven by Selenium through the system's chromedriver (no download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError("Chromium and its driver are missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    # Above the page script's own limits (20 s for images, 10 s for the header, 240 s for MathJax to typeset).
    chrome.set_script_timeout(330)
    chrome.set_page_load_timeout(120)
    return chrome


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on a free local port (fonts and scripts load as on a web server)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# The facts that list offending items, and the message for each item ({column}: the text column's width in px).
ITEM_PROBLEMS = (
    ("raw_tex", "TeX shown as source: {0!r}"),
    ("wide_tables", "table wider than the text column ({column} px): {0}"),
    ("wide_math", "display formula wider than the text column ({column} px): {0}"),
    ("low_res_images", "image below retina resolution (2 pixels per CSS pixel): {0}"),
    ("loose_images", "image outside a captioned figure: {0}"),
    ("tqdm_text", "progress-bar residue: tqdm text {0!r}"),
    ("nan_cells", "'nan' table cell: {0}"),
    ("markdown_tables", "Markdown table printed as text: {0!r}"),
    ("wide_code", "code cell wider than the text column ({column} px), scrolls sideways: {0}"),
    ("tight_tables", "table whose columns touch (cells without padding): {0}"),
)


def page_problems(chrome, url: str, stem: str, *, chapter: bool = True) -> list[str]:
    """Every problem a reader would see on the page ``url``, one message each.

    ``chapter``: the page is the chapter of notebook ``stem``, so it also needs a claims table, a Colab link to
    its ``.ipynb``, and (chapters 1-6) its number in the title and in its figures' numbers.
    """
    chrome.get(url)
    facts = chrome.execute_async_script(FACTS_JS)
    problems = []
    if facts["math_total"] and (not facts["mathjax_loaded"] or facts["mathjax_error"]):
        problems.append(f"MathJax: {facts['mathjax_error'] or 'not loaded'}")
    if facts["math_untypeset"]:
        problems.append(f"MathJax: {len(facts['math_untypeset'])} of {facts['math_total']} formulas not typeset, "
                        f"first {facts['math_untypeset'][:3]}")
    if facts["math_errors"]:
        problems.append(f"MathJax: errors in formulas: {facts['math_errors'][:5]}")
    column = round(facts["column_width"])
    for key, message in ITEM_PROBLEMS:
        problems += [message.format(item, column=column) for item in facts[key]]
    if facts["search_boxes"] != 1:
        problems.append(f"{facts['search_boxes']} search boxes on the page, not one")
    if facts["widgets"] or facts["widget_manager"]:
        problems.append(f"progress-bar residue: {facts['widgets']} widget outputs, widget manager "
                        f"{facts['widget_manager']}")
    if not chapter:
        return problems
    number = int(stem[:2]) if stem[:2].isdigit() else 0
    if number:  # chapters 1-6 are numbered in the sidebar and their figures per chapter (the primer is not)
        if facts["title_number"] != f"{number}.":
            problems.append(f"the title is numbered {facts['title_number']!r}, not '{number}.'")
        for figure in facts["figure_numbers"]:
            if not figure.startswith(f"Fig. {number}."):
                problems.append(f"figure numbered {figure!r}, not per chapter (Fig. {number}.n)")
    if not facts["claims_tables"]:
        problems.append("no claims table (table.claims-table, from ebmlib.report.Claims.table)")
    ipynb = f"/notebooks/{stem}.ipynb"
    if not facts["colab_links"] or any(not link.endswith(ipynb) for link in facts["colab_links"]):
        problems.append(f"Colab links {facts['colab_links']} do not all open {ipynb}")
    return problems


def main(html: Path) -> int:
    """Check every page of the built book in ``html`` (chapters and reference); print the problems per page."""
    pages = sorted((html / "notebooks").glob("[0-9][0-9]_*.html")) + sorted((html / "book").rglob("*.html"))
    failed = 0
    chrome = chromium_driver()
    try:
        with serve(html) as base:
            for page in pages:
                path = page.relative_to(html).as_posix()
                problems = page_problems(chrome, f"{base}/{path}", page.stem, chapter=path.startswith("notebooks/"))
                failed += bool(problems)
                print(f"{path}: {len(problems)} problems" + "".join(f"\n  - {p}" for p in problems))
    finally:
        chrome.quit()
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")))
