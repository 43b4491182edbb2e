"""End to end in real headless Chromium (Debian `chromium` + `chromium-driver`, driven by selenium).

Renames and merges labels through the page, accepts a queue suggestion, and checks the database; checks that a
hostile document renders as text. Screenshots land in /tmp/review-shots/ for a human look.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from workflow.store import Store

from .conftest import XSS

CHROMIUM, DRIVER = (shutil.which("chromium") or "/usr/bin/chromium",
                    shutil.which("chromedriver") or "/usr/bin/chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install selenium")
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
    reason="headless Chromium not installed: apt-get install -y chromium chromium-driver",
)
SHOTS = Path("/tmp/review-shots")


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tnt-chromium-")
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1360,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _shot(driver, name: str, full: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    if full:
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1360, min(height + 120, 6000))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1360, 1000)


def _flash(driver, expected: str) -> None:
    """Wait for the page after a form post to show `expected` in its flash message (a click does not wait)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: any(expected in e.text for e in d.find_elements(By.CSS_SELECTOR, ".flash.ok"))
    )


def _open_details(driver, card, title: str) -> None:
    from selenium.webdriver.common.by import By

    for d in card.find_elements(By.CSS_SELECTOR, "details"):
        if d.find_element(By.TAG_NAME, "summary").text.startswith(title):
            d.find_element(By.TAG_NAME, "summary").click()
            return
    raise AssertionError(f"no '{title}' section")


def test_rename_and_merge_through_the_page(server, run_db, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, _ = server
    db, run_id = run_db
    with Store(db) as store:
        version, labels = store.taxonomy(run_id)
        a, b = labels[0], labels[1]
        moved = store.label_counts(run_id)[a.label_id]
        target_before = store.label_counts(run_id)[b.label_id]
    browser.get(url)
    assert browser.title.startswith("Review")
    _shot(browser, "01-overview")

    card = browser.find_element(By.ID, f"label-{b.label_id}")
    _open_details(browser, card, "Edit")
    field = card.find_element(By.CSS_SELECTOR, f"#rename-{b.label_id} input[name=name]")
    field.clear()
    field.send_keys("Renamed <i>in</i> the browser")
    card.find_element(By.CSS_SELECTOR, f"#rename-{b.label_id} button").click()
    _flash(browser, "Label renamed.")
    name = browser.find_element(By.CSS_SELECTOR, f"#label-{b.label_id} .name").text
    assert name == "Renamed <i>in</i> the browser"  # shown as text, not markup

    card = browser.find_element(By.ID, f"label-{a.label_id}")
    _open_details(browser, card, "Edit")
    Select(card.find_element(By.CSS_SELECTOR, f"#merge-{a.label_id} select")).select_by_value(b.label_id)
    card.find_element(By.CSS_SELECTOR, f"#merge-{a.label_id} button").click()
    _flash(browser, "Labels merged.")
    assert not browser.find_elements(By.ID, f"label-{a.label_id}")
    _shot(browser, "02-after-edits")
    browser.get(url + "#history")
    _shot(browser, "05-history", full=False)

    with Store(db) as store:
        latest, now = store.taxonomy(run_id)
        assert latest == version + 2
        assert {lb.label_id: lb.name for lb in now}[b.label_id] == "Renamed <i>in</i> the browser"
        assert a.label_id not in {lb.label_id for lb in now}
        counts = store.label_counts(run_id)
        assert a.label_id not in counts and counts[b.label_id] == target_before + moved
        assert [r["action"] for r in store.reviews(run_id)] == ["rename", "merge"]
        assert {r["reviewer"] for r in store.reviews(run_id)} == {"tester"}
    llm_count = browser.find_element(By.CSS_SELECTOR, f"#label-{b.label_id} .n-llm").text
    assert int(llm_count) == target_before + moved


def test_hostile_document_renders_as_text_and_queue_accept_works(server, run_db, browser):
    from selenium.webdriver.common.by import By

    url, _ = server
    db, run_id = run_db
    browser.get(url)
    assert browser.find_elements(By.TAG_NAME, "script") == []
    with Store(db) as store:
        first = store.taxonomy(run_id)[1][0].label_id
    card = browser.find_element(By.ID, f"label-{first}")
    _open_details(browser, card, "Examples")
    texts = [p.text for p in card.find_elements(By.CSS_SELECTOR, ".doc .text")]
    assert XSS in texts
    assert "<img src=x onerror=alert(2)>" in card.text
    assert browser.find_elements(By.CSS_SELECTOR, ".doc b") == []  # <b> in the text did not become markup
    _shot(browser, "03-examples", full=False)

    item = browser.find_element(By.CSS_SELECTOR, ".qitem")
    doc_id = item.get_attribute("data-doc")
    item.find_element(By.CSS_SELECTOR, "form.accept button").click()
    _flash(browser, "Label corrected.")
    with Store(db) as store:
        human = store.assignments(run_id, "human")
        assert doc_id in human and human[doc_id] != store.assignments(run_id, "llm")[doc_id]
    assert doc_id not in [e.get_attribute("data-doc") for e in browser.find_elements(By.CSS_SELECTOR, ".qitem")]
    browser.get(url + "#queue")
    _shot(browser, "04-queue", full=False)


def test_post_without_token_is_refused_in_the_browser(server, run_db, browser):
    from selenium.webdriver.common.by import By

    url, _ = server
    db, run_id = run_db
    browser.get(url)
    with Store(db) as store:
        lid = store.taxonomy(run_id)[1][0].label_id
    browser.execute_script(  # rewrite a form the way a forger would: no token
        "const f = document.querySelector(arguments[0]); f.querySelector('input[name=csrf]').remove();"
        "f.querySelector('input[name=name]').value = 'Forged'; f.submit();",
        f"#rename-{lid}",
    )
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(lambda d: "CSRF" in d.find_element(By.TAG_NAME, "body").text)
    with Store(db) as store:
        assert store.reviews(run_id) == [] and store.taxonomy(run_id)[1][0].name != "Forged"


def test_hierarchy_tree_collapses_and_moves_a_child(server, run_db, browser):
    """A two-level taxonomy shows as collapsible parents; moving a child through the page re-parents it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from workflow.config import JobConfig
    from workflow.graph.nodes.hierarchy import build_hierarchy
    from workflow.llm.gateway import Gateway

    url, _ = server
    db, run_id = run_db
    with Store(db) as store:
        config = JobConfig.model_validate(store.run(run_id)["config"])
        build_hierarchy(store, Gateway(store, run_id, show_progress=False), run_id, config, max_parents=3)
        _, leaves = store.taxonomy(run_id)
        parents = store.parents(run_id)
        counts = store.label_counts(run_id)
    child = leaves[0]
    source = child.parent_id
    target = next(p.label_id for p in parents if p.label_id != source)

    browser.get(url)
    tree = browser.find_element(By.ID, "fig-tree")  # the hierarchy chart: one node per leaf and per parent
    assert len(tree.find_elements(By.CSS_SELECTOR, ".node.d2")) == len(leaves)
    assert len(tree.find_elements(By.CSS_SELECTOR, ".node.d1")) == len(parents)
    section = browser.find_element(By.ID, f"parent-{source}")
    card = section.find_element(By.ID, f"label-{child.label_id}")  # the child sits inside its parent
    assert card.is_displayed()
    section.find_element(By.TAG_NAME, "summary").click()  # collapse the parent
    assert not card.is_displayed()
    section.find_element(By.TAG_NAME, "summary").click()
    assert card.is_displayed()
    _shot(browser, "06-tree")

    Select(card.find_element(By.CSS_SELECTOR, f"#move-{child.label_id} select")).select_by_value(target)
    card.find_element(By.CSS_SELECTOR, f"#move-{child.label_id} button").click()
    _flash(browser, "Label moved")
    moved = browser.find_element(By.ID, f"parent-{target}").find_elements(By.ID, f"label-{child.label_id}")
    assert moved, "the child should now be listed under its new parent"
    assert not browser.find_element(By.ID, f"parent-{source}").find_elements(By.ID, f"label-{child.label_id}")
    _shot(browser, "07-after-move")

    with Store(db) as store:
        _, now = store.taxonomy(run_id)
        assert {lb.label_id: lb.parent_id for lb in now}[child.label_id] == target
        assert [lb.label_id for lb in now] == [lb.label_id for lb in leaves]
        assert store.label_counts(run_id) == counts
        assert store.reviews(run_id)[-1]["action"] == "move"


def test_pause_page_shows_what_each_label_means_and_the_map(paused_server, paused_db, browser):
    """At the `--review` pause: each label's size, typical and border documents and nearest label; the map has one
    mark per sampled document, its hover text is text; moving an example through the page makes a human label."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from workflow.review.labelview import placement
    from workflow.review.mapview import MAP_POINTS

    url, _ = paused_server
    db, run_id = paused_db
    with Store(db) as store:
        labels = store.taxonomy(run_id)[1]
        place = placement(store, run_id, labels)
        members = store.cluster_members(run_id)
    browser.get(url)
    assert browser.find_elements(By.TAG_NAME, "script") == []
    marks = browser.find_elements(By.CSS_SELECTOR, "#map svg circle.pt")
    assert len(marks) == min(len(place.label_of), MAP_POINTS) == len(members)
    assert {m.get_attribute("data-doc") for m in marks} == set(members)
    hover = browser.find_element(By.CSS_SELECTOR, '#map circle.pt[data-doc="000-xss"] title')
    assert XSS in hover.get_attribute("textContent")  # the hostile text is hover text, not markup
    assert browser.find_elements(By.CSS_SELECTOR, "#map svg b, #map svg script") == []
    on_map = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#map .cname")}
    assert on_map == {lb.name for lb in labels if lb.label_id in set(members.values())}

    shown = [lb for lb in labels if lb.label_id in set(members.values())]
    for lb in shown:
        card = browser.find_element(By.ID, f"label-{lb.label_id}")
        size = sum(1 for v in members.values() if v == lb.label_id)
        assert int(card.find_element(By.CSS_SELECTOR, ".n-size").text) == size
        assert card.find_elements(By.CSS_SELECTOR, ".meaning .ex .text"), lb.name
        if len(shown) > 1:
            assert "nearest label" in card.find_element(By.CSS_SELECTOR, ".meaning .size").text
    browser.set_window_size(1360, 1750)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "08-pause-map.png"))
    browser.set_window_size(1360, 1000)

    source = shown[0].label_id
    card = browser.find_element(By.ID, f"label-{source}")
    example = card.find_element(By.CSS_SELECTOR, ".meaning .ex")
    doc_id = example.get_attribute("data-doc")
    target = next(lb.label_id for lb in labels if lb.label_id != source)
    Select(example.find_element(By.TAG_NAME, "select")).select_by_value(target)
    example.find_element(By.TAG_NAME, "button").click()
    _flash(browser, "Label corrected.")
    with Store(db) as store:
        assert store.assignments(run_id, "human") == {doc_id: target}
        assert store.run(run_id)["status"] == "paused"
    size = sum(1 for v in members.values() if v == source)
    assert int(browser.find_element(By.CSS_SELECTOR, f"#label-{source} .n-size").text) == size - 1
    dot = browser.find_element(By.CSS_SELECTOR, f'#map circle.pt[data-doc="{doc_id}"]')
    assert dot.get_attribute("data-label") == target  # the map shows the reviewer's label


def test_report_renders_offline_with_map_and_charts(run_db, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from workflow.review.report import report_context, write_report

    db, run_id = run_db
    out = tmp_path / "report.html"
    with Store(db) as store:
        write_report(store, run_id, out)
        points = report_context(store, run_id)["insight"]["map"].points
    browser.get(out.as_uri())
    assert browser.title.startswith("tnt report")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map svg circle.pt")) == len(points) > 0
    for fig in ("fig-sizes", "fig-confusion"):
        box = browser.find_element(By.ID, fig).rect
        assert box["width"] > 200 and box["height"] > 80, fig  # drawn, not an empty frame
    hover = browser.find_element(By.CSS_SELECTOR, '#map circle.pt[data-doc="000-xss"] title')
    assert XSS in hover.get_attribute("textContent")  # the hostile document is hover text, not markup
    assert browser.find_elements(By.CSS_SELECTOR, "script, .doc b, .ex b") == []
    _shot(browser, "09-report")
