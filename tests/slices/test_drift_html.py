"""The drift report to look at: DriftReport.to_html / fstore drift --html write one
self-contained HTML file, whose histograms (fstore.drift_histograms) agree with numpy on
the same rows, and which a real headless browser (Debian's chromium) renders with every
image loaded, no page errors, and a screenshot that is not blank."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fstore.cli import main
from fstore.drift_html import BASELINE_COLOR, CURRENT_COLOR, histograms
from tests.browser import assert_not_blank, page_attributes, pixels_of, screenshot

T0 = pd.Timestamp("2024-01-01", tz="UTC")
HOSTILE = "<img src=x onerror=alert(1)>"
FEATURES = {"account_id": "bigint", "amount": "double precision", "tx_count": "bigint", "channel": "text",
            "seen_at": "timestamptz"}


def frame(rng: np.random.Generator, rows: int, *, shift: float, day: int, channels: list[str],
          weights: list[float]) -> pd.DataFrame:
    return pd.DataFrame({
        "account_id": np.arange(rows, dtype="int64"),
        "event_time": T0 + pd.Timedelta(days=day) + pd.to_timedelta(np.arange(rows), unit="s"),
        "amount": np.where(rng.random(rows) < 0.05, np.nan, rng.normal(shift, 1.0, rows)),
        "tx_count": rng.integers(0, 5, rows).astype("int64"),
        "channel": rng.choice(channels, rows, p=weights),
        "seen_at": T0 + pd.to_timedelta(rng.integers(0, 10**6, rows), unit="s"),
    })


@pytest.fixture
def drifting(alice):
    """Commit 1: the baseline; commit 2: amount shifted by +1 and a new channel (with a hostile name)."""
    rng = np.random.default_rng(4)
    fg = alice.create_feature_group("payments", 1, keys=["account_id"], features=FEATURES)
    frames = [frame(rng, 3000, shift=0.0, day=0, channels=["web", "app", "atm"], weights=[0.6, 0.3, 0.1]),
              frame(rng, 3000, shift=1.0, day=10, channels=["web", "app", "atm", HOSTILE],
                    weights=[0.4, 0.3, 0.1, 0.2])]
    commits = [fg.insert(f).id for f in frames]
    return fg, frames, commits


class Page(HTMLParser):
    """Every tag's attributes, to check that the page loads nothing from outside."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_histograms_agree_with_numpy(alice, drifting) -> None:
    fg, frames, commits = drifting
    report = alice.drift("payments", baseline=commits[0], current=commits[1])
    bins = histograms(alice, report, bins=30)
    assert list(bins) == ["amount", "tx_count", "channel"]  # no histogram of a time
    base, cur = frames[0]["amount"].dropna().to_numpy(), frames[1]["amount"].dropna().to_numpy()
    edges = np.linspace(min(base.min(), cur.min()), max(base.max(), cur.max()), 31)
    assert bins["amount"]["edges"] == pytest.approx(list(edges), rel=1e-12)
    assert bins["amount"]["baseline"] == pytest.approx(list(np.histogram(base, edges)[0] / len(base)), abs=1e-12)
    assert bins["amount"]["current"] == pytest.approx(list(np.histogram(cur, edges)[0] / len(cur)), abs=1e-12)
    assert (bins["amount"]["baseline_values"], bins["amount"]["current_values"]) == (len(base), len(cur))
    counts = bins["tx_count"]  # whole numbers 0..4: one bin each, centred
    assert counts["edges"] == [-0.5, 0.5, 1.5, 2.5, 3.5, 4.5]
    assert counts["current"] == pytest.approx(list(np.bincount(frames[1]["tx_count"], minlength=5) / 3000))
    channel = bins["channel"]
    together = pd.concat([frames[0]["channel"], frames[1]["channel"]]).value_counts()
    order = sorted(together.items(), key=lambda kv: (-kv[1], kv[0]))
    assert channel["labels"] == [v for v, _ in order] and channel["edges"] is None
    shares = frames[1]["channel"].value_counts(normalize=True)
    assert channel["current"] == pytest.approx([shares.get(v, 0.0) for v, _ in order])
    assert channel["baseline"][channel["labels"].index(HOSTILE)] == 0


def test_the_report_renders_in_a_real_browser(alice, drifting, tmp_path) -> None:
    fg, frames, commits = drifting
    report = alice.drift("payments", baseline=commits[0], current=commits[1])
    sliced = fg.statistics(slice_by="channel", features=["amount"])
    path = report.to_html(tmp_path / "out" / "drift.html", alice, slices=sliced)
    assert path == tmp_path / "out" / "drift.html" and not list(path.parent.glob(".*.tmp"))
    text = path.read_text()

    # self-contained: every image a PNG data URI, nothing fetched from anywhere
    page = Page()
    page.feed(text)
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 3 and all(a["src"].startswith("data:image/png;base64,") for a in images)
    assert not [a for tag, a in page.tags if tag in ("link", "script", "iframe") and (a.get("src") or a.get("href"))]
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", text)
    # the hostile category is text on the page, never markup
    assert HOSTILE not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "amount" in text and "drifted" in text and "statistics by channel" in text

    shown = page_attributes(path, tmp_path)
    assert shown.get("data-images-loaded") == "true" and shown.get("data-errors") == "0", shown
    assert shown.get("data-images") == "3"

    pixels = screenshot(path, tmp_path / "drift.png", tmp_path)
    assert_not_blank(pixels)
    for color in (BASELINE_COLOR, CURRENT_COLOR):  # the charts' own colours are on screen
        assert pixels_of(pixels, color) > 500, color


def test_a_report_without_a_connection_says_what_is_missing(alice, drifting, tmp_path) -> None:
    _, _, commits = drifting
    report = alice.drift("payments", baseline=commits[0], current=commits[1])
    text = report.to_html(tmp_path / "bare.html").read_text()
    assert "Histograms need a connection" in text and "<img" not in text and "amount" in text


def test_cli_drift_html(fraud, home, drifting, tmp_path) -> None:
    _, _, commits = drifting
    target = tmp_path / "report.html"
    args = ["--home", str(home.root), "drift", "payments", "--baseline", f"commit={commits[0]}",
            "--current", f"commit={commits[1]}", "--html", str(target), "--json", "--as", fraud.role("bob")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["features"][0]["feature"] == "amount"  # stdout: still one JSON document
    assert target.exists() and target.read_text().count("data:image/png;base64,") == 3


def test_the_browser_check_sees_a_broken_image_and_a_script_error(tmp_path) -> None:
    """The page's own check can fail: a corrupt PNG and a throwing script are both seen."""
    from fstore.drift_html import SELF_CHECK

    page = tmp_path / "broken.html"
    page.write_text(f"<!DOCTYPE html><html><head><script>{SELF_CHECK}</script></head><body>"
                    "<img src='data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=='>"
                    "<script>window.setTimeout(function () { throw new Error('boom'); }, 0);</script>"
                    "<script>undefinedFunction();</script></body></html>")
    shown = page_attributes(page, tmp_path)
    assert shown.get("data-images-loaded") == "false" and int(shown.get("data-errors", "0")) >= 1, shown


def test_slices_of_a_drift_report_render_whatever_their_shape(tmp_path) -> None:
    """report.slices (per-slice drift) is rendered generically: records with nested per-feature results."""
    from dataclasses import dataclass

    from fstore.drift import DriftReport, FeatureDrift
    from fstore.drift_html import render_html

    def measured(feature: str, psi: float) -> FeatureDrift:
        return FeatureDrift(feature=feature, kind="numeric", baseline_rows=100, current_rows=90,
                            baseline_null_rate=0.0, current_null_rate=0.1, baseline_mean=1.0, current_mean=2.0,
                            psi=psi, js_distance=0.1, ks=0.2, new_values=None, drifted=psi >= 0.2)

    @dataclass
    class SliceDrift:
        slice: str
        rows: int
        features: list[FeatureDrift]
        drifted: bool

    report = DriftReport(feature_group="p.g@1", baseline={"commit": 1}, current={"commit": 2}, threshold=0.2,
                         features=[measured("amount", 0.5)])
    report.slices = [SliceDrift("DE", 120, [measured("amount", 0.05)], False),  # type: ignore[attr-defined]
                     SliceDrift("<b>MT</b>", 40, [measured("amount", 0.9)], True)]
    text = render_html(report, {})
    assert "slices of the drift report" in text and "&lt;b&gt;MT&lt;/b&gt;" in text and "<b>MT</b>" not in text
    assert text.count("<tr class=drifted>") >= 3  # amount overall, the MT slice and its amount row
    page = tmp_path / "slices.html"
    page.write_text(text)
    shown = page_attributes(page, tmp_path)
    assert shown.get("data-images-loaded") == "true" and shown.get("data-errors") == "0", shown
