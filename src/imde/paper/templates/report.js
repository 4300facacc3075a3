/* imde report: client-side charts (inline SVG) and the unit browser, from the JSON embedded in the page. */
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("imde-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = { baseline: "#868e96", assign: "#3b5bdb", reg: "#e8590c" };
  const EXTRA = ["#2b8a3e", "#ae3ec9", "#0c8599", "#f08c00"];

  function color(variant, i) { return PALETTE[variant] || EXTRA[i % EXTRA.length]; }
  function label(variant) { return DATA.labels[variant] || variant; }
  function fmt(x, d) { return x === null || x === undefined || !isFinite(x) ? "–" : Number(x).toFixed(d); }
  function svg(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }
  function html(tag, attrs, parent, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, content, attrs) {
    const node = svg("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }
  function linear(d0, d1, r0, r1) {
    const span = d1 - d0 || 1;
    return (v) => r0 + ((v - d0) / span) * (r1 - r0);
  }
  function niceTicks(lo, hi, n) {
    const step0 = (hi - lo) / Math.max(n, 1) || 1;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    // the nice step nearest to step0 (the first one above it can leave a single tick)
    const step = [1, 2, 5, 10].map((m) => m * mag)
      .reduce((best, s) => (Math.abs(Math.log(s / step0)) < Math.abs(Math.log(best / step0)) ? s : best));
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(+v.toFixed(10));
    return ticks;
  }
  /* A frame with y grid lines and labels; returns the x/y scales. */
  function frame(root, box, xDomain, yDomain, xLabel, yLabel) {
    const x = linear(xDomain[0], xDomain[1], box.left, box.right);
    const y = linear(yDomain[0], yDomain[1], box.bottom, box.top);
    for (const t of niceTicks(yDomain[0], yDomain[1], 4)) {
      svg("line", { x1: box.left, x2: box.right, y1: y(t), y2: y(t), class: "gridline" }, root);
      text(root, box.left - 6, y(t) + 4, String(t), { "text-anchor": "end" });
    }
    svg("line", { x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom, class: "axis" }, root);
    if (xLabel) text(root, (box.left + box.right) / 2, box.bottom + 30, xLabel, { "text-anchor": "middle" });
    if (yLabel) {
      text(root, 12, (box.top + box.bottom) / 2, yLabel,
        { "text-anchor": "middle", transform: `rotate(-90 12 ${(box.top + box.bottom) / 2})` });
    }
    return { x: x, y: y };
  }
  function chartCard(parent, title) {
    const card = html("div", { class: "chart" }, parent);
    html("h4", {}, card, title);
    return card;
  }
  function legend(parent, items) {
    const box = html("div", { class: "legend" }, parent);
    for (const [name, col, dashed] of items) {
      const item = html("span", {}, box);
      const swatch = html("i", {}, item);
      swatch.style.background = dashed ? "transparent" : col;
      if (dashed) swatch.style.border = `2px dashed ${col}`;
      item.appendChild(document.createTextNode(name));
    }
  }
  function splitOf(variant) {
    const splits = Object.keys(DATA.dissect[variant] || {});
    return splits.includes("test") ? "test" : splits[0];
  }
  function layersOf(variant, split) { return Object.keys((DATA.dissect[variant] || {})[split] || {}); }

  /* ---------------------------------------------------------------- DS histograms (Fig. 3/4 summary) */
  function drawHistograms() {
    const host = document.getElementById("ds-hist");
    const variants = DATA.order.filter((v) => DATA.dissect[v]);
    const layers = [...new Set(variants.flatMap((v) => layersOf(v, splitOf(v))))];
    const bins = 20;
    for (const layer of layers) {
      const card = chartCard(host, `DS of layer ${layer}`);
      const items = [];
      const root = svg("svg", { viewBox: "0 0 420 220", role: "img", "aria-label": `DS histogram ${layer}` }, card);
      const box = { left: 44, right: 410, top: 10, bottom: 180 };
      const series = [];
      variants.forEach((v, i) => {
        const diss = (DATA.dissect[v][splitOf(v)] || {})[layer];
        if (!diss) return;
        const ds = diss.units.selectivity.filter((d) => d !== null);
        const counts = new Array(bins).fill(0);
        for (const d of ds) counts[Math.min(bins - 1, Math.max(0, Math.floor(d * bins)))] += 1;
        series.push({ v: v, i: i, frac: counts.map((c) => c / Math.max(ds.length, 1)), mean: diss.selectivity });
      });
      const top = Math.max(0.1, ...series.flatMap((s) => s.frac));
      const sc = frame(root, box, [0, 1], [0, top * 1.08], "depth selectivity DS", "fraction of units");
      for (const t of [0, 0.2, 0.4, 0.6, 0.8, 1]) text(root, sc.x(t), box.bottom + 14, String(t), { "text-anchor": "middle" });
      for (const s of series) {
        let d = `M ${sc.x(0)} ${sc.y(0)}`;
        s.frac.forEach((f, b) => { d += ` L ${sc.x(b / bins)} ${sc.y(f)} L ${sc.x((b + 1) / bins)} ${sc.y(f)}`; });
        d += ` L ${sc.x(1)} ${sc.y(0)} Z`;
        const col = color(s.v, s.i);
        svg("path", { d: d, fill: col, "fill-opacity": 0.18, stroke: col, "stroke-width": 1.6, class: "hist" }, root);
        items.push([`${label(s.v)} · mean ${fmt(s.mean, 3)}`, col, false]);
      }
      if (DATA.randomBaseline !== null) {
        const xr = sc.x(DATA.randomBaseline);
        svg("line", { x1: xr, x2: xr, y1: box.top, y2: box.bottom, class: "chance" }, root);
        items.push([`random baseline ${fmt(DATA.randomBaseline, 3)}`, "#868e96", true]);
      }
      legend(card, items);
    }
  }

  /* ------------------------------------------------------------------------ ablation curves (Fig. 2) */
  function drawAblation() {
    const host = document.getElementById("ablation-charts");
    DATA.order.filter((v) => DATA.ablation[v]).forEach((variant) => {
      const a = DATA.ablation[variant];
      if (!a || !a.units || !a.units.length) return;
      const layers = Array.isArray(a.layers) ? ` (units of ${a.layers.join(" & ")})` : "";
      const card = chartCard(host, `${label(variant)}${layers}`);
      const root = svg("svg", { viewBox: "0 0 420 220", role: "img", "aria-label": `ablation ${variant}` }, card);
      const box = { left: 44, right: 410, top: 10, bottom: 180 };
      const all = [...a.most_selective_first, ...a.least_selective_first].filter((v) => v !== null);
      const lo = Math.min(...all), hi = Math.max(...all);
      const pad = (hi - lo) * 0.08 || 0.05;
      const sc = frame(root, box, [Math.min(...a.units), Math.max(...a.units)], [lo - pad, hi + pad],
        "number of ablated units", "δ1");
      for (const t of niceTicks(Math.min(...a.units), Math.max(...a.units), 6)) {
        text(root, sc.x(t), box.bottom + 14, String(t), { "text-anchor": "middle" });
      }
      const curves = [["most selective first", a.most_selective_first, "#c92a2a"],
                      ["least selective first", a.least_selective_first, "#1971c2"]];
      for (const [, ys, col] of curves) {
        const pts = a.units.map((u, k) => (ys[k] === null ? null : `${sc.x(u)},${sc.y(ys[k])}`)).filter(Boolean);
        svg("polyline", { points: pts.join(" "), fill: "none", stroke: col, "stroke-width": 2 }, root);
      }
      legend(card, curves.map(([name, , col]) => [name, col, false]));
    });
  }

  /* --------------------------------------------------------------------------------- sprite tiles */
  function tile(parent, sprite, row, col, rows, cols, title) {
    const node = html("div", { class: "tile", title: title || "" }, parent);
    node.style.backgroundImage = `url("${sprite.src}")`;
    node.style.backgroundSize = `${cols * 100}% ${rows * 100}%`;
    node.style.backgroundPosition = `${cols > 1 ? (col / (cols - 1)) * 100 : 0}% ${rows > 1 ? (row / (rows - 1)) * 100 : 0}%`;
    node.style.setProperty("--aspect", `${sprite.tile[1]} / ${sprite.tile[0]}`);
    return node;
  }
  /* A table of tiles: one column per kind (input, depth, a unit's map...), one row per sample (as Fig. 5). */
  function tileTable(parent, columns, samples) {
    const grid = html("div", { class: "maps" }, parent);
    grid.style.gridTemplateColumns = `repeat(${columns.length}, minmax(0, 1fr))`;
    grid.style.maxWidth = `${columns.length * 150}px`;
    for (const c of columns) html("div", { class: "colhead" }, grid, c.name);
    for (let s = 0; s < samples; s++) {
      for (const c of columns) tile(grid, c.sprite, c.row, s, c.rows, samples, `${c.name} · sample ${s}`);
    }
    return grid;
  }
  function imageColumns(atlas, withPrediction) {
    const im = atlas.images, rows = im.rows.length;
    const cols = [{ name: "input", sprite: im, row: 0, rows: rows }, { name: "depth (GT)", sprite: im, row: 1, rows: rows }];
    if (withPrediction && rows > 2) cols.push({ name: "prediction", sprite: im, row: 2, rows: rows });
    return cols;
  }
  function unitColumns(atlas, layer, unit, bin, name) {
    const L = atlas.layers[layer];
    if (!L || unit === null) return [];
    const cols = [];
    if (L.masks && bin !== null && bin !== undefined && bin >= 0 && bin < L.masks.bins) {
      cols.push({ name: `pred. in bin ${bin}`, sprite: L.masks, row: bin, rows: L.masks.bins });
    }
    cols.push({ name: name, sprite: L, row: unit, rows: L.units });
    return cols;
  }
  function binRange(diss, b) {
    if (b === null || b === undefined || b < 0) return "–";
    const e = diss.edges;
    return e ? `${b} (${fmt(e[b], 2)}–${fmt(e[b + 1], 2)} m)` : String(b);
  }
  /* ----------------------------------------------------------------------------- the unit browser */
  const UB = { model: null, split: null, layer: null, unit: 0 };
  function tuning(root, diss, unit, variant) {
    root.replaceChildren();
    const r = diss.units.mean_response[unit];
    const finite = r.filter((v) => v !== null);
    const box = { left: 50, right: 548, top: 16, bottom: 214 };
    const lo = Math.min(0, ...finite), hi = Math.max(1e-12, ...finite);
    const sc = frame(root, box, [0, diss.num_bins], [lo, hi * 1.08], "depth bin (near → far)", "mean response");
    const w = (box.right - box.left) / diss.num_bins;
    const assigned = variant === "assign" && diss.units.assigned_bin ? diss.units.assigned_bin[unit] : null;
    const preferred = diss.units.preferred_bin ? diss.units.preferred_bin[unit] : null;
    if (assigned !== null && assigned !== undefined && assigned >= 0) {
      svg("rect", { x: sc.x(assigned), y: box.top, width: w, height: box.bottom - box.top, fill: "#fff3bf", class: "assigned-band" }, root);
    }
    r.forEach((v, b) => {
      if (v === null) {
        svg("rect", { x: sc.x(b) + w * 0.15, y: box.bottom - 3, width: w * 0.7, height: 3, fill: "#dee2e6" }, root);
        return;
      }
      const y0 = sc.y(Math.max(0, lo)), y1 = sc.y(v);
      svg("rect", { x: sc.x(b) + w * 0.12, y: Math.min(y0, y1), width: w * 0.76, height: Math.abs(y1 - y0) || 0.5,
        fill: b === assigned ? "#f08c00" : b === preferred ? "#3b5bdb" : "#a5b4fc", class: "bar", "data-bin": b }, root);
    });
    const pts = r.map((v, b) => (v === null ? null : `${sc.x(b) + w / 2},${sc.y(v)}`)).filter(Boolean);
    svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#1b2a4a", "stroke-width": 1.5, class: "tuning" }, root);
    const step = Math.max(1, Math.ceil(diss.num_bins / 8));
    for (let b = 0; b < diss.num_bins; b += step) {
      const t = diss.edges ? `${fmt(diss.edges[b + 1], 1)}m` : String(b);
      text(root, sc.x(b) + w / 2, box.bottom + 14, t, { "text-anchor": "middle" });
    }
  }
  function miniCurve(cell, diss, unit, variant) {
    const root = svg("svg", { viewBox: "0 0 100 40", preserveAspectRatio: "none" }, cell);
    const r = diss.units.mean_response[unit];
    const finite = r.filter((v) => v !== null);
    const lo = Math.min(0, ...finite), hi = Math.max(1e-12, ...finite);
    const x = linear(0, Math.max(diss.num_bins - 1, 1), 3, 97), y = linear(lo, hi, 37, 3);
    const a = variant === "assign" && diss.units.assigned_bin ? diss.units.assigned_bin[unit] : null;
    if (a !== null && a !== undefined && a >= 0) {
      svg("rect", { x: x(a) - 47 / diss.num_bins, y: 0, width: 94 / diss.num_bins, height: 40, fill: "#ffe8a1" }, root);
    }
    const pts = r.map((v, b) => (v === null ? null : `${x(b)},${y(v)}`)).filter(Boolean);
    const ds = diss.units.selectivity[unit] || 0;
    const col = `hsl(228, ${Math.round(20 + 60 * ds)}%, ${Math.round(62 - 26 * ds)}%)`;
    svg("polyline", { points: pts.join(" "), fill: "none", stroke: col, "stroke-width": 2, "vector-effect": "non-scaling-stroke" }, root);
  }
  function current() { return ((DATA.dissect[UB.model] || {})[UB.split] || {})[UB.layer]; }
  function fillSelect(select, values, chosen, names) {
    select.replaceChildren();
    for (const v of values) html("option", { value: v }, select, names ? names(v) : v);
    select.value = values.includes(chosen) ? chosen : values[0];
    return select.value;
  }
  function syncControls() {
    const models = DATA.order.filter((v) => DATA.dissect[v]);
    UB.model = fillSelect(document.getElementById("ub-model"), models, UB.model, label);
    UB.split = fillSelect(document.getElementById("ub-split"), Object.keys(DATA.dissect[UB.model]), UB.split);
    UB.layer = fillSelect(document.getElementById("ub-layer"), layersOf(UB.model, UB.split), UB.layer);
  }
  /* Mini tuning curves of every unit of a layer, each labelled with its DS; a click calls onPick(unit). */
  /* per-unit 95 % intervals and permutation p / BH q-values of a dissected layer ({} without replicates) */
  function unitStats(diss) { return (diss.significance && diss.significance.units) || {}; }
  function significant(diss, k) { const q = unitStats(diss).q_value; return !!(q && q[k] !== null && q[k] < 0.05); }
  function intervalText(diss, k) {
    const st = unitStats(diss);
    if (!st.ci_low) return "";
    const q = st.q_value ? ` · q ${fmt(st.q_value[k], 3)}` : "";
    return ` [${fmt(st.ci_low[k], 3)}, ${fmt(st.ci_high[k], 3)}]${q}`;
  }
  function unitGrid(host, diss, variant, onPick) {
    for (let k = 0; k < diss.num_units; k++) {
      const cell = html("div", { class: "cell" + (significant(diss, k) ? " significant" : ""), "data-unit": k,
        title: `unit ${k} · DS ${fmt(diss.units.selectivity[k], 3)}${intervalText(diss, k)}` }, host);
      miniCurve(cell, diss, k, variant);
      html("span", {}, cell, `${k} · ${fmt(diss.units.selectivity[k], 2)}`);
      cell.addEventListener("click", () => onPick(k));
    }
  }
  function renderGrid() {
    const grid = document.getElementById("ub-grid");
    grid.replaceChildren();
    unitGrid(grid, current(), UB.model, selectUnit);
  }
  /* Every unit's DS (dot) with its 95 % bootstrap interval (bar), units sorted by DS; filled dots: q < 0.05
     under the permutation null (the unit codes its own image's depth); dashed: the random baseline (Eq. 3). */
  function drawIntervals() {
    const host = document.getElementById("ds-intervals");
    if (!host) return;
    for (const v of DATA.order.filter((name) => DATA.dissect[name])) {
      for (const [layer, diss] of Object.entries(DATA.dissect[v][splitOf(v)] || {})) {
        const st = unitStats(diss);
        if (!st.ci_low) continue;
        const fig = html("figure", { class: "chart" }, host);
        const found = st.q_value ? st.q_value.filter((q) => q !== null && q < 0.05).length : null;
        html("figcaption", {}, fig, `${label(v)} · ${layer} · DS with 95 % intervals` +
          (found === null ? "" : ` · ${found} of ${diss.num_units} units selective at q < 0.05 (filled)`));
        const root = svg("svg", { viewBox: "0 0 560 200", class: "curve", role: "img",
          "aria-label": `DS intervals of ${layer}` }, fig);
        const order = [...Array(diss.num_units).keys()]
          .sort((a, b) => (diss.units.selectivity[a] || 0) - (diss.units.selectivity[b] || 0));
        const x = linear(0, Math.max(order.length - 1, 1), 40, 550), y = linear(0, 1, 185, 10);
        for (const t of [0, 0.5, 1]) text(root, 34, y(t) + 4, fmt(t, 1), { "text-anchor": "end", class: "tick" });
        if (diss.random_baseline !== null) {
          svg("line", { x1: 40, x2: 550, y1: y(diss.random_baseline), y2: y(diss.random_baseline),
            class: "baseline", "stroke-dasharray": "4 3", stroke: "#868e96" }, root);
        }
        order.forEach((k, i) => {
          const lo = st.ci_low[k], hi = st.ci_high[k], ds = diss.units.selectivity[k];
          if (lo !== null && hi !== null) {
            svg("line", { x1: x(i), x2: x(i), y1: y(lo), y2: y(hi), stroke: color(v, 0), "stroke-width": 1.5 }, root);
          }
          if (ds !== null) {
            const dot = svg("circle", { cx: x(i), cy: y(ds), r: 2.5, stroke: color(v, 0),
              fill: significant(diss, k) ? color(v, 0) : "#fff" }, root);
            svg("title", {}, dot).textContent = `unit ${k} · DS ${fmt(ds, 3)}${intervalText(diss, k)}`;
          }
        });
      }
    }
  }
  /* Fig. 3/4: one grid per layer and model (test split); a click opens the unit in the browser. */
  function drawDissectionGrids() {
    const host = document.getElementById("dissect-grids");
    const variants = DATA.order.filter((v) => DATA.dissect[v]);
    const layers = [...new Set(variants.flatMap((v) => layersOf(v, splitOf(v))))];
    for (const layer of layers) {
      for (const v of variants) {
        const diss = (DATA.dissect[v][splitOf(v)] || {})[layer];
        if (!diss) continue;
        html("h4", {}, host, `${label(v)} · layer ${layer} · ${splitOf(v)} split · mean DS ${fmt(diss.selectivity, 3)}`);
        unitGrid(html("div", { class: "grid" }, host), diss, v, (k) => {
          UB.model = v; UB.split = splitOf(v); UB.layer = layer;
          syncControls(); renderGrid(); selectUnit(k);
          document.getElementById("browser").scrollIntoView();
        });
      }
    }
  }
  function renderMaps(diss) {
    const host = document.getElementById("ub-maps");
    host.replaceChildren();
    const atlas = DATA.atlas[UB.model];
    if (!atlas || !atlas.layers[UB.layer]) {
      html("p", { class: "missing" }, host, `No feature maps for ${label(UB.model)} · ${UB.layer} (atlas/${UB.model}/ missing).`);
      return;
    }
    tileTable(host, [...imageColumns(atlas, true),
      ...unitColumns(atlas, UB.layer, UB.unit, maskBin(UB.model, diss, UB.unit), `unit ${UB.unit}`)], atlas.samples);
  }
  /* The bin whose predicted-depth mask goes beside a unit: its assigned bin (Eq. 6) for the model trained with
     L_assign, its preferred (max-response) bin otherwise (docs/math.md, "FGSM"). */
  function maskBin(variant, diss, unit) {
    const key = variant === "assign" && diss.units.assigned_bin ? "assigned_bin" : "preferred_bin";
    return diss.units[key] ? diss.units[key][unit] : null;
  }
  function selectUnit(k) {
    const diss = current();
    if (!diss) return;
    UB.unit = Math.max(0, Math.min(diss.num_units - 1, k | 0));
    document.getElementById("ub-unit").value = UB.unit;
    document.getElementById("ub-unit").max = diss.num_units - 1;
    document.getElementById("ub-title").textContent = `${label(UB.model)} · ${UB.layer} · unit ${UB.unit}` +
      (diss.units.dead && diss.units.dead[UB.unit] ? " (dead)" : "");
    document.getElementById("ub-ds").textContent = fmt(diss.units.selectivity[UB.unit], 4);
    document.getElementById("ub-ci").textContent = intervalText(diss, UB.unit).replace(/^ /, "") || "–";
    const assigned = UB.model === "assign" && diss.units.assigned_bin ? diss.units.assigned_bin[UB.unit] : null;
    document.getElementById("ub-assigned").textContent = assigned === null ? "–" :
      `${binRange(diss, assigned)} · DS ${fmt(diss.units.selectivity_assigned ? diss.units.selectivity_assigned[UB.unit] : null, 3)}`;
    document.getElementById("ub-preferred").textContent = diss.units.preferred_bin ? binRange(diss, diss.units.preferred_bin[UB.unit]) : "–";
    document.getElementById("ub-layer-ds").textContent = fmt(diss.selectivity, 4);
    tuning(document.getElementById("ub-curve"), diss, UB.unit, UB.model);
    document.querySelectorAll("#ub-grid .cell").forEach((c) => c.classList.toggle("selected", +c.dataset.unit === UB.unit));
    renderMaps(diss);
  }
  function onControlsChange() {
    UB.model = document.getElementById("ub-model").value;
    UB.split = document.getElementById("ub-split").value;
    UB.layer = document.getElementById("ub-layer").value;
    syncControls();
    renderGrid();
    selectUnit(UB.unit);
  }
  function initBrowser() {
    if (!Object.keys(DATA.dissect).length) return;
    document.getElementById("unit-browser").hidden = false;
    UB.model = DATA.dissect.assign ? "assign" : null;
    syncControls();
    for (const id of ["ub-model", "ub-split", "ub-layer"]) document.getElementById(id).addEventListener("change", onControlsChange);
    document.getElementById("ub-unit").addEventListener("change", (e) => selectUnit(+e.target.value));
    document.getElementById("ub-prev").addEventListener("click", () => selectUnit(UB.unit - 1));
    document.getElementById("ub-next").addEventListener("click", () => selectUnit(UB.unit + 1));
    document.addEventListener("keydown", (e) => {
      if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
      const box = document.getElementById("unit-browser").getBoundingClientRect();
      if (box.bottom < 0 || box.top > window.innerHeight) return;
      if (e.key === "ArrowLeft") selectUnit(UB.unit - 1);
      if (e.key === "ArrowRight") selectUnit(UB.unit + 1);
    });
    renderGrid();
    selectUnit(0);
  }

  /* ------------------------------------------- Fig. 5: interpretable units beside the baseline's */
  function bestUnitForBin(diss, bin, key) {
    let best = null;
    for (let k = 0; k < diss.num_units; k++) {
      const b = diss.units[key] ? diss.units[key][k] : null;
      if (b === bin && (best === null || (diss.units.selectivity[k] || 0) > (diss.units.selectivity[best] || 0))) best = k;
    }
    return best;
  }
  function drawComparison() {
    const host = document.getElementById("fm-compare");
    const ours = "assign", base = "baseline";
    if (!DATA.atlas[ours] || !DATA.dissect[ours]) return;
    const split = splitOf(ours);
    const layer = layersOf(ours, split).find((l) => DATA.atlas[ours].layers[l]);
    if (!layer) return;
    const diss = DATA.dissect[ours][split][layer];
    const key = diss.units.assigned_bin ? "assigned_bin" : "preferred_bin";
    const seen = (b) => b !== null && b >= 0 && (!diss.counts || diss.counts[b] > 0);
    const bins = [...new Set(diss.units[key] || [])].filter(seen).sort((p, q) => p - q);
    const picks = bins.length ? [bins[0], bins[Math.floor(bins.length / 2)], bins[bins.length - 1]] : [];
    const baseDiss = ((DATA.dissect[base] || {})[splitOf(base)] || {})[layer];
    const atlas = DATA.atlas[ours], shown = Math.min(atlas.samples, 3);
    for (const bin of [...new Set(picks)]) {
      const unit = bestUnitForBin(diss, bin, key);
      const strip = html("div", { class: "strip" }, host);
      html("h4", {}, strip, `Layer ${layer} · depth bin ${binRange(diss, bin)}`);
      const cols = [...imageColumns(atlas, false), ...unitColumns(atlas, layer, unit, bin, `ours · unit ${unit}`)];
      const baseUnit = baseDiss ? bestUnitForBin(baseDiss, bin, "preferred") : null;
      if (baseUnit !== null && DATA.atlas[base] && DATA.atlas[base].samples === atlas.samples) {
        cols.push(...unitColumns(DATA.atlas[base], layer, baseUnit, null, `baseline · unit ${baseUnit}`));
      }
      tileTable(strip, cols, shown);
    }
  }

  /* ------------------------------------------------------------------ Fig. 6: predictions side by side */
  function drawPredictions() {
    const host = document.getElementById("pred-strip");
    const variants = DATA.order.filter((v) => DATA.atlas[v]);
    if (!variants.length) return;
    const first = DATA.atlas[variants[0]];
    const cols = imageColumns(first, false);
    for (const v of variants) {
      const im = DATA.atlas[v].images;
      if (im.rows.length > 2 && DATA.atlas[v].samples === first.samples) {
        cols.push({ name: label(v), sprite: im, row: 2, rows: im.rows.length });
      }
    }
    tileTable(host, cols, first.samples);
  }

  drawHistograms();
  drawAblation();
  initBrowser();
  drawDissectionGrids();
  drawIntervals();
  drawComparison();
  drawPredictions();
})();
