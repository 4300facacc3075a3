"""report.html / results.md: the tables carry results.json's numbers, every string is escaped, missing pieces
are named in the page, the embedded data round-trips, nothing points at the network."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_report_fakerun import RESULTS, make_fake_run

from imde.paper.report import build_report, load_run

EVIL_LAYER = "<script>alert(1)</script>"
EVIL_CONFIG = 'name: "&<>"\nnote: \'</pre><img src=x onerror=alert(2)>\'\n'


class _Tables(HTMLParser):
    """``{figure id: [[cell text, is best]]}`` of the ``<figure class="table" id=...>`` tables of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, bool]]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._best = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "figure" and attr.get("class") == "table":
            self._table = attr["id"]
            self.tables[self._table] = []
        elif self._table and tag == "tr":
            self.tables[self._table].append([])
        elif self._table and tag in ("td", "th"):
            self._cell, self._best = [], attr.get("class") == "best"

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._table = None
        elif self._table and tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(("".join(self._cell).strip(), self._best))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(html: str) -> dict[str, dict[str, list[tuple[str, bool]]]]:
    parser = _Tables()
    parser.feed(html)
    return {tid: {row[0][0]: row[1:] for row in rows[1:]} for tid, rows in parser.tables.items()}


def _page_data(html: str) -> dict:
    match = re.search(r'<script id="imde-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "embedded data block missing"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = make_fake_run(tmp_path_factory.mktemp("report") / "demo")
    page = build_report(run)
    return run, page.read_text(encoding="utf-8")


def test_table1_has_every_number_of_results_json(built: tuple[Path, str]) -> None:
    run, html = built
    table = _tables(html)["table1"]
    assert list(table)[:3] == ["Baseline", "Interpretable (L_assign)", "Regularised (L_reg)"]
    baseline = [text for text, _ in table["Baseline"]]
    # results.json: selectivity 0.4217/0.4102 (4 decimals), delta1..log10 to 3 decimals.
    assert baseline == ["0.4217", "0.4102", "0.812", "0.954", "0.988", "0.531", "0.142", "0.061"]
    assign = table["Interpretable (L_assign)"]
    assert [text for text, _ in assign] == ["0.8342", "0.7764", "0.819", "0.957", "0.988", "0.521", "0.140", "0.060"]
    # bold = best of the column: higher selectivity/delta, lower errors; the assign model wins every column here
    assert all(best for _, best in assign)
    # ... and ties at the shown precision are all bold: delta3 0.9877 (baseline) and 0.9881 (assign) both show 0.988
    assert [best for _, best in table["Baseline"]] == [False] * 4 + [True] + [False] * 3
    assert [text for text, _ in table["Random units (Eq. 3)"]][:2] == ["0.3511", "0.3511"]


def test_layer_table_splits_the_selectivity_by_layer(built: tuple[Path, str]) -> None:
    run, html = built
    table = _tables(html)["layers"]
    assert table["Baseline"] == [("0.5311", False), ("0.2893", False)]
    assert table["Interpretable (L_assign)"] == [("0.7605", True), ("0.7923", True)]
    assert table["Regularised (L_reg)"] == [("–", False), ("–", False)]  # results.json has no layers for it
    assert [text for text, _ in table["Random units (Eq. 3)"]] == ["0.3511", "0.3511"]
    assert "| Baseline | 0.5311 | 0.2893 |" in (run / "results.md").read_text(encoding="utf-8")


def test_table2_compares_reg_and_assign_and_table3_shows_before_after(built: tuple[Path, str]) -> None:
    _, html = built
    tables = _tables(html)
    assert list(tables["table2"]) == ["Regularised (L_reg)", "Interpretable (L_assign)",
                                      "Interpretable (L_assign) − Regularised (L_reg) (paired)"]
    assert tables["table2"]["Regularised (L_reg)"][1][0] == "0.5304"
    corr = tables["table3"]
    assert [t for t, _ in corr["Baseline"]] == ["0.812 → 0.839", "0.531 → 0.501", "+0.027"]
    assert [t for t, _ in corr["Interpretable (L_assign)"]] == ["0.819 → 0.901", "0.521 → 0.423", "+0.083"]
    assert corr["Interpretable (L_assign)"][2][1] and not corr["Baseline"][2][1]


def test_claims_are_badges_with_their_values(built: tuple[Path, str]) -> None:
    _, html = built
    claims = re.findall(r'<li class="claim (holds|fails)">.*?<span class="text">(.*?)</span>\s*'
                        r'<span class="value">(.*?)</span>', html, re.S)
    expected = [("holds" if c["holds"] else "fails", c["claim"], f"{c['value']:.4f}") for c in RESULTS["claims"]]
    assert [(kind, unescape(text), value) for kind, text, value in claims] == expected
    assert "5 of 6 claims hold" in html


def test_results_md_tables(built: tuple[Path, str]) -> None:
    run, _ = built
    md = (run / "results.md").read_text(encoding="utf-8")
    assert "| Baseline | 0.4217 | 0.4102 | 0.812 | 0.954 | **0.988** | 0.531 | 0.142 | 0.061 |" in md
    assert "| Interpretable (L_assign) | **0.8342** | **0.7764** | **0.819** |" in md
    assert "| Baseline | 0.812 → 0.839 | 0.531 → 0.501 | +0.027 |" in md
    assert "| ✗ | correction gain (delta1): interpretable above baseline | -0.0001 |" in md
    assert "Whole study: 734.2 s." in md


def test_embedded_data_round_trips(built: tuple[Path, str]) -> None:
    run, html = built
    data = _page_data(html)  # strict JSON: no NaN
    raw = json.loads((run / "dissect" / "assign" / "dissect.json").read_text())
    layer = raw["splits"]["test"]["layers"]["D"]
    page_layer = data["dissect"]["assign"]["test"]["D"]  # the page holds LayerDissection.to_dict(), keys unchanged
    assert page_layer["units"]["selectivity"] == pytest.approx(layer["units"]["selectivity"], rel=1e-5)
    response = data["dissect"]["assign"]["test"]["D"]["units"]["mean_response"]
    expected = layer["units"]["mean_response"]
    for row, ref in zip(response, expected, strict=True):
        assert [v if v is not None else float("nan") for v in row] == pytest.approx(ref, rel=1e-5, nan_ok=True)
    assert any(v is None for row in response for v in row)  # bin 0 holds no pixel: NaN became null
    assert data["order"] == ["baseline", "assign", "reg"]
    sprite = data["atlas"]["assign"]["layers"]["D"]["src"]
    assert sprite.startswith("data:image/png;base64,")
    assert base64.b64decode(sprite.split(",", 1)[1]) == (run / "atlas" / "assign" / "layer_00_D.png").read_bytes()


def test_page_needs_no_network_and_leaves_no_temporary_files(built: tuple[Path, str]) -> None:
    run, html = built
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html)
    assert "@import" not in html and "<link" not in html
    srcs = re.findall(r'<img src="([^"]*)"', html)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    figures = re.findall(r'<figure class="(figure[^"]*)"><img src="[^"]*" alt="([^"]*)"', html)
    assert sorted(name for cls, name in figures if cls == "figure wide") == ["fig3_dissection_assign.png"]
    assert not list(run.glob(".*.tmp"))


def test_every_string_is_escaped(tmp_path: Path) -> None:
    results = json.loads(json.dumps(RESULTS))
    results["claims"][0]["claim"] = "<b>bold</b> & | pipes"
    run = make_fake_run(tmp_path / "evil", atlas=False, figures=False, layer_names=(EVIL_LAYER, "D"),
                        config=EVIL_CONFIG, results=results)
    (run / "figures").mkdir()
    shutil.copy(Path(__file__), run / "figures" / "not-a-figure.txt")
    evil_png = run / "figures" / "fig2_<img src=x onerror=alert(3)>.png"
    make_png = __import__("test_report_fakerun").atomic_write_bytes_png
    make_png(evil_png, (10, 20, 30))
    html = build_report(run).read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html and "alert(2)>" not in html and "<img src=x" not in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; | pipes" in html
    assert "name: &#34;&amp;&lt;&gt;&#34;" in html
    assert "fig2_&lt;img src=x onerror=alert(3)&gt;.png" in html
    data = _page_data(html)
    assert EVIL_LAYER in data["dissect"]["assign"]["test"]
    md = (run / "results.md").read_text(encoding="utf-8")
    assert "<b>" not in md and "\\<b\\>bold\\</b\\> & \\| pipes" in md


def test_missing_pieces_are_named_in_the_page(tmp_path: Path) -> None:
    run = tmp_path / "partial"
    run.mkdir()
    with pytest.raises(ValueError, match="is not a run directory of `imde study`"):
        build_report(run)  # an empty folder is no study
    (run / "eval").mkdir()  # a study whose first measuring step has begun
    html = build_report(run).read_text(encoding="utf-8")
    for piece in ("results.json", "dissect/&lt;variant&gt;/dissect.json", "atlas/&lt;variant&gt;/index.json",
                  "explain/&lt;variant&gt;.json", "config.yaml", "ablation results"):
        assert piece in html, piece
    assert "table1" not in html
    md = (run / "results.md").read_text(encoding="utf-8")
    assert "No claims were recorded" in md

    results = {k: v for k, v in RESULTS.items() if k not in ("correction", "ablation")}
    (run / "results.json").write_text(json.dumps(results))
    html = build_report(run).read_text(encoding="utf-8")
    assert 'id="table1"' in html and 'id="table3"' not in html
    assert "Not in this run: correction results (Table 3)." in html


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_report(tmp_path / "nowhere")
    run = tmp_path / "bad"
    run.mkdir()
    results = json.loads(json.dumps(RESULTS))
    results["models"]["assign"]["metrics"]["delta1"] = "high"
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match=r"results\.json: models\.assign\.metrics\.delta1 must be a number, got 'hi"):
        build_report(run)
    (run / "results.json").write_text('{"models": {,}}')
    with pytest.raises(ValueError, match=r"results\.json: not valid JSON \(line 1, column 13"):
        build_report(run)
    (run / "results.json").unlink()
    (run / "figures").mkdir()
    (run / "figures" / "fig2_ablation.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"fig2_ablation\.png: not a PNG file"):
        build_report(run)
    (run / "figures" / "fig2_ablation.png").unlink()
    broken = run / "dissect" / "assign"
    broken.mkdir(parents=True)
    layer = {"units": {"mean_response": [[1.0, 2.0], [1.0]], "selectivity": [0.1, 0.2]}}
    (broken / "dissect.json").write_text(json.dumps({"splits": {"test": {"layers": {"D": layer}}}}))
    with pytest.raises(ValueError, match=r"dissect\.json: layer 'D': units\.mean_response must have 2 bins"):
        load_run(run)
    layer = {"units": {"mean_response": [[1.0, 2.0], [1.0, 0.5]], "selectivity": [0.1]}}
    (broken / "dissect.json").write_text(json.dumps({"splits": {"test": {"layers": {"D": layer}}}}))
    with pytest.raises(ValueError, match=r"units\.selectivity has length 1; expected 2 \(2 units, 2 bins\)"):
        load_run(run)


def test_atlas_with_a_missing_sprite_is_left_out_and_named(built: tuple[Path, str], tmp_path: Path) -> None:
    run = Path(shutil.copytree(built[0], tmp_path / "copy"))
    (run / "atlas" / "baseline" / "layer_01_MFF.png").unlink()
    html = build_report(run).read_text(encoding="utf-8")
    assert "Not in this run: atlas/baseline/layer_01_MFF.png." in html
    assert list(_page_data(html)["atlas"]) == ["assign"]


def test_explain_table_reads_as_fig_8(built: tuple[Path, str]) -> None:
    _, html = built
    start = html.index('id="explain-1"')
    block = html[start:html.index("</figure>", start)]
    assert "layer MFF, FGSM ε = 0.050" in block and "units by their assigned (Eq. 6) bin" in block
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", block, re.S)]
    # EXPLAIN: bin 11 spans edges[11] = 0.75 + 0.6 * 10 to edges[12]; error fractions 0.18 and 0.51
    assert cells[1] == ["clean", "18.0 %", "0.820", "11 (6.75–7.35 m)", "11 (IoU 0.12)"]
    assert cells[2] == ["adversarial", "51.0 %", "0.490", "11 (6.75–7.35 m)", "11 (IoU 0.41)"]


def test_explain_numbers_are_listed(built: tuple[Path, str]) -> None:
    _, html = built
    block = html[html.index("explain/baseline.json"):html.index("</details>", html.index("explain/baseline.json"))]
    rows = dict(re.findall(r'<tr><th scope="row">(.*?)</th><td>(.*?)</td></tr>', block))
    assert rows["adversarial.delta1"] == "0.4900" and rows["clean.delta1"] == "0.8200"
    assert rows["adversarial.top_bin"] == "11" and rows["adversarial.units"] == "11"
    assert rows["adversarial.histogram"] == "0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 310, 40, 9, 1, 0"
    assert "edges" not in rows  # 17 numbers: data, not a table entry
