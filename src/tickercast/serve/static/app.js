/* tickercast dashboard: reads the public API of this host and draws it. No build step, no CDN. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const HISTORY_DAYS = 120;
  const CHART_HEIGHT = 380;
  let chart = null;
  let currentTicker = null;
  let requestSeq = 0;
  let hasHistory = false; // whether this API offers GET /history/{ticker} (read from its OpenAPI schema)

  // --- API -------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "application/json" } });
    } catch (err) {
      throw new ApiError(0, "the API cannot be reached");
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
      } catch (_) { /* not JSON: keep the status text */ }
      throw new ApiError(response.status, detail);
    }
    return response.json();
  }

  // --- formatting ------------------------------------------------------------------------------------
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const price = (v) => (isNum(v) ? v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : "–");
  const pct = (v, digits = 2) => (isNum(v) ? `${v > 0 ? "+" : v < 0 ? "−" : ""}${Math.abs(v).toFixed(digits)}%` : "–");
  const trend = (v) => (!isNum(v) || Math.abs(v) < 1e-9 ? "flat" : v > 0 ? "up" : "down");
  const shortVersion = (v) => (v ? String(v).slice(0, 12) : "–");
  const when = (iso) => {
    if (!iso) return "–";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
  };
  const prettyFeature = (name) => String(name)
    .replace(/^mkt_(\w+?)_(close|ret)$/, (_, idx, kind) => `${idx.toUpperCase()} ${kind === "ret" ? "return" : "close"}`)
    .replace(/_/g, " ");

  function setText(id, text, cls) {
    const el = $(id);
    el.textContent = text;
    if (cls !== undefined) {
      el.classList.remove("up", "down", "flat");
      if (cls) el.classList.add(cls);
    }
  }

  function banner(message, kind = "info") {
    const el = $("banner");
    if (!message) {
      el.hidden = true;
      return;
    }
    el.textContent = message;
    el.className = `banner ${kind === "error" ? "error" : ""}`;
    el.hidden = false;
  }

  // --- model card ------------------------------------------------------------------------------------
  function metric(metrics, ...names) {
    for (const name of names) {
      for (const key of [name, `test_${name}`, `test/${name}`]) {
        if (isNum(metrics[key])) return metrics[key];
      }
    }
    return null;
  }

  function renderModel(model) {
    const metrics = model.test_metrics || model.metrics || {};
    const version = model.model_version ?? model.version;
    const mae = metric(metrics, "mae", "mae_close");
    const naive = metric(metrics, "naive_mae", "mae_naive");
    const coverage = metric(metrics, "coverage", "coverage_p10_p90", "p10_p90_coverage");
    setText("model-version", version ? `v${version}` : "local bundle");
    setText("data-version", shortVersion(model.data_version));
    $("data-version").title = model.data_version || "";
    setText("test-mae", isNum(mae) ? price(mae) : "–");
    setText("naive-mae", isNum(naive) ? price(naive) : "–");
    const badge = $("model-badge");
    if (isNum(mae) && isNum(naive) && naive > 0) {
      const rel = (mae / naive - 1) * 100;
      setText("vs-naive", `${pct(rel, 1)} MAE`, rel <= 0 ? "up" : "down");
      badge.textContent = rel <= 0 ? "beats naive" : "behind naive";
      badge.className = `pill ${rel <= 0 ? "good" : "bad"}`;
    } else {
      badge.textContent = version ? `v${version}` : "model";
      badge.className = "pill";
    }
    setText("coverage", isNum(coverage) ? `${(coverage * (coverage <= 1 ? 100 : 1)).toFixed(0)}% (target 80%)` : "–");
    setText("trained-at", when(model.trained_at));
    setText("run-id", model.run_id ? String(model.run_id).slice(0, 12) : "–");
    $("run-id").title = model.run_id || "";
    const horizon = model.horizon;
    setText("model-horizon", isNum(horizon) ? (horizon === 1 ? "1 trading day" : `1–${horizon} trading days`) : "–");
    setText("trained-through", model.trained_through || "–");
    const skilled = renderSkill(model.horizons || []);
    if (skilled !== null) {
      // The calibration window's verdict outranks one test window's MAE.
      badge.textContent = skilled.length ? `skill at ${skilled.join(", ")} d` : "no measurable skill";
      badge.className = `pill ${skilled.length ? "good" : "bad"}`;
    }
  }

  // The skill in words, as the calibration window measured it: first and last horizon in the
  // summary, every horizon in the table. Returns the horizons with skill (null: none stated).
  function renderSkill(horizons) {
    const summary = $("skill-summary");
    const body = $("skill-table").querySelector("tbody");
    body.replaceChildren();
    if (!horizons.length) {
      summary.textContent = "Not stated: this model has no calibration window.";
      summary.className = "skill-summary none";
      return null;
    }
    const ends = horizons.length > 1 ? [horizons[0], horizons[horizons.length - 1]] : [horizons[0]];
    const sentence = ends.map((h) => h.skill).join("; ");
    summary.textContent = sentence.charAt(0).toUpperCase() + sentence.slice(1) + ".";
    const stated = horizons.filter((h) => isNum(h.shrink));
    const skilled = stated.filter((h) => h.shrink > 0 && !/^no measurable skill/.test(h.skill || "")).map((h) => h.horizon);
    summary.className = `skill-summary${skilled.length ? "" : " none"}`;
    const cov = (v) => (isNum(v) ? `${(v * 100).toFixed(0)}%` : "–");
    for (const h of horizons) {
      const row = document.createElement("tr");
      row.title = h.skill || "";
      for (const text of [
        String(h.horizon),
        isNum(h.shrink) ? h.shrink.toFixed(2) : "–",
        `${cov(h.coverage_raw)} → ${cov(h.coverage_calibrated)}`,
      ]) {
        row.append(Object.assign(document.createElement("td"), { textContent: text }));
      }
      body.append(row);
    }
    return stated.length ? skilled : null;
  }

  // --- track record (the latest backtest) -----------------------------------------------------------
  const MODEL_NOTES = { tft_raw: "before calibration", naive: "random walk", drift: "random walk with drift" };

  function backtestTable(board, data) {
    const wrap = document.createElement("div");
    wrap.className = "backtest-horizon";
    wrap.dataset.horizon = String(board.horizon);
    const days = board.horizon === 1 ? "the next trading day (h = 1)" : `${board.horizon} trading days ahead (h = ${board.horizon})`;
    wrap.append(Object.assign(document.createElement("h4"), { textContent: `Forecasts for ${days}` }));
    if (board.skill) wrap.append(Object.assign(document.createElement("p"), { className: "small backtest-skill", textContent: board.skill }));
    const table = document.createElement("table");
    table.className = "backtest-table";
    const head = document.createElement("tr");
    for (const text of ["#", "Model", "Scaled CRPS", "MAE / naive (90% interval)", "In P10–P90", "Band width"]) {
      head.append(Object.assign(document.createElement("th"), { scope: "col", textContent: text }));
    }
    const thead = document.createElement("thead");
    thead.append(head);
    table.append(thead, document.createElement("tbody"));
    const fixed = (v, d) => (isNum(v) ? v.toFixed(d) : "–");
    const share = (v, d = 0) => (isNum(v) ? `${(v * 100).toFixed(d)}%` : "–");
    for (const row of board.rows) {
      const tr = document.createElement("tr");
      tr.dataset.model = row.model;
      if (row.champion) tr.className = "champion";
      else if (row.model === data.subject) tr.className = "subject";
      const name = document.createElement("td");
      name.append(Object.assign(document.createElement("span"), { className: "model-name", textContent: row.model }));
      if (MODEL_NOTES[row.model]) name.append(Object.assign(document.createElement("span"), { className: "muted small", textContent: ` ${MODEL_NOTES[row.model]}` }));
      if (row.champion) name.append(Object.assign(document.createElement("span"), { className: "pill good tag", textContent: "★ champion" }));
      const interval = isNum(row.mae_vs_naive_lo) && isNum(row.mae_vs_naive_hi) ? ` (${fixed(row.mae_vs_naive_lo, 3)}–${fixed(row.mae_vs_naive_hi, 3)})` : "";
      tr.append(
        Object.assign(document.createElement("td"), { textContent: String(row.rank) }),
        name,
        Object.assign(document.createElement("td"), { textContent: fixed(row.scaled_crps, 4) }),
        Object.assign(document.createElement("td"), { textContent: `${fixed(row.mae_vs_naive, 3)}${interval}` }),
        Object.assign(document.createElement("td"), {
          textContent: share(row.coverage_80),
          className: isNum(row.coverage_80) && Math.abs(row.coverage_80 - 0.8) <= 0.05 ? "up" : "down",
        }),
        Object.assign(document.createElement("td"), { textContent: share(row.width_80, 1) }),
      );
      table.tBodies[0].append(tr);
    }
    wrap.append(table);
    return wrap;
  }

  // The leaderboard at h = 1 and at the largest horizon, with links to the report's plots.
  // A service without a backtest keeps the panel hidden.
  async function showBacktest() {
    const panel = $("backtest-panel");
    let data;
    try {
      data = await api("/backtest");
    } catch (err) {
      panel.hidden = true;
      document.body.dataset.backtest = "none";
      return;
    }
    const boards = data.horizons || [];
    const shown = boards.length > 1 ? [boards[0], boards[boards.length - 1]] : boards;
    $("backtest-tables").replaceChildren(...shown.map((board) => backtestTable(board, data)));
    const o = data.origins || {};
    const every = isNum(o.step) ? `, every ${o.step} trading day${o.step === 1 ? "" : "s"}` : "";
    setText("backtest-subtitle", `${o.count} origins from ${o.first} to ${o.last}${every} · run ${data.run} of ${when(data.created_at)}`);
    const badge = $("backtest-badge");
    const subject = shown.length ? shown[0].rows.find((r) => r.model === data.subject) : null;
    badge.textContent = subject ? `${data.subject} ranks ${subject.rank} of ${shown[0].rows.length} at h = 1` : `${data.models.length} models`;
    badge.className = `pill${subject ? (subject.rank === 1 ? " good" : "") : ""}`;
    const links = (data.plots || []).map((plot) => {
      const a = Object.assign(document.createElement("a"), { href: plot.url, textContent: plot.title, target: "_blank", rel: "noopener" });
      const li = document.createElement("li");
      li.append(a);
      return li;
    });
    $("backtest-plots").replaceChildren(...links);
    $("backtest-plots").previousElementSibling.hidden = links.length === 0;
    panel.hidden = false;
    document.body.dataset.backtest = "shown";
  }

  // --- forecast tiles --------------------------------------------------------------------------------
  function renderForecast(p) {
    const q = p.quantiles || {};
    const p10 = q.p10;
    const p90 = q.p90;
    const p50 = isNum(q.p50) ? q.p50 : p.predicted_price;
    setText("predicted-price", price(p.predicted_price));
    setText("predicted-change", `${pct(p.change)} vs last close`, trend(p.change));
    setText("forecast-for", p.forecast_for ? `· ${p.forecast_for}` : "");
    setText("as-of", p.as_of ? `From data up to ${p.as_of}` : "");
    setText("band", isNum(p10) && isNum(p90) ? `${price(p10)} – ${price(p90)}` : "–");
    setText("band-kind", p.calibrated ? "· calibrated" : p.calibrated === false ? "· the model's own" : "");
    if (isNum(p10) && isNum(p90) && isNum(p50)) {
      // Scale the bar to ±(band) around the median, so the median sits where it falls in the band.
      const half = Math.max(p50 - p10, p90 - p50, 1e-9) * 1.25;
      const lo = p50 - half;
      const span = 2 * half;
      $("band-fill").style.left = `${((p10 - lo) / span) * 100}%`;
      $("band-fill").style.width = `${((p90 - p10) / span) * 100}%`;
      $("band-mid").style.left = `calc(${((p50 - lo) / span) * 100}% - 1px)`;
      setText("band-width", `spread ${(((p90 - p10) / p50) * 100).toFixed(2)}% of the median`);
    }
    for (const days of [1, 3, 5]) {
      const v = p[{ 1: "one_diff", 3: "three_diff", 5: "five_diff" }[days]];
      setText(`diff-${days}`, pct(v), trend(v));
    }
    renderPath(forecastPath(p));
    const s = p.sentiment;
    setText("sentiment", isNum(s) ? `${s > 0 ? "+" : ""}${s.toFixed(2)}` : "no news", isNum(s) ? trend(s) : "flat");
    $("sentiment-marker").style.left = `calc(${((isNum(s) ? Math.max(-1, Math.min(1, s)) : 0) + 1) * 50}% - 2px)`;
  }

  // The path over every horizon; an API without one gives the next day only.
  function forecastPath(p) {
    if (Array.isArray(p.path) && p.path.length) return p.path;
    const q = p.quantiles || {};
    return [{ horizon: 1, forecast_for: p.forecast_for, p10: q.p10, p50: isNum(q.p50) ? q.p50 : p.predicted_price, p90: q.p90 }];
  }

  function renderPath(path) {
    const body = $("path-table").querySelector("tbody");
    body.replaceChildren();
    for (const point of path) {
      const row = document.createElement("tr");
      const cells = [
        [String(point.horizon), ""],
        [point.forecast_for, ""],
        [price(point.p10), "p10"],
        [price(point.p50), "p50"],
        [price(point.p90), "p90"],
      ];
      for (const [text, cls] of cells) {
        row.append(Object.assign(document.createElement("td"), { textContent: text, className: cls }));
      }
      body.append(row);
    }
    const last = path[path.length - 1];
    setText("path-caption", path.length > 1 ? `· next ${path.length} trading days to ${last.forecast_for}` : "· next trading day");
  }

  // --- importances -----------------------------------------------------------------------------------
  function renderBars(id, shares, limit = 8) {
    const list = $(id);
    list.replaceChildren();
    const entries = Object.entries(shares || {}).filter(([, v]) => isNum(v)).sort((a, b) => b[1] - a[1]);
    if (!entries.length) {
      const li = document.createElement("li");
      li.innerHTML = '<span class="none">none</span>';
      list.append(li);
      return;
    }
    const total = entries.reduce((sum, [, v]) => sum + v, 0) || 1;
    const top = entries[0][1] / total;
    for (const [name, value] of entries.slice(0, limit)) {
      const share = value / total;
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = prettyFeature(name);
      label.title = name;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${(share / top) * 100}%`;
      track.append(fill);
      const num = document.createElement("span");
      num.className = "share";
      num.textContent = `${(share * 100).toFixed(1)}%`;
      li.append(label, track, num);
      list.append(li);
    }
  }

  function renderExplain(explain) {
    const e = explain || {};
    renderBars("imp-encoder", e.encoder_importance);
    renderBars("imp-decoder", e.decoder_importance);
    renderBars("imp-static", e.static_importance);
  }

  // --- chart -----------------------------------------------------------------------------------------
  const toTs = (iso) => Date.parse(`${String(iso).slice(0, 10)}T00:00:00Z`) / 1000;
  const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function historyPoints(history) {
    const rows = Array.isArray(history) ? history : history.history || history.points || history.rows || [];
    if (rows.length) {
      return rows
        .map((r) => [toTs(r.date ?? r.as_of), r.close ?? r.Close])
        .filter(([t, c]) => Number.isFinite(t) && isNum(c))
        .sort((a, b) => a[0] - b[0]);
    }
    const dates = history.dates || [];
    const closes = history.closes || history.close || [];
    return dates.map((d, i) => [toTs(d), closes[i]]).filter(([t, c]) => Number.isFinite(t) && isNum(c));
  }

  function drawChart(points, p) {
    const el = $("chart");
    el.replaceChildren();
    if (chart) {
      chart.destroy();
      chart = null;
    }
    const recent = points.slice(-HISTORY_DAYS);
    const path = forecastPath(p);
    const xs = recent.map(([t]) => t);
    const close = recent.map(([, c]) => c);
    const lastClose = close[close.length - 1];
    const pad = (n) => new Array(n).fill(null);
    const n = xs.length;
    // The cone: every series starts at the last close and runs through the path's days.
    const cone = (key) => [...pad(n - 1), lastClose, ...path.map((point) => (isNum(point[key]) ? point[key] : null))];
    const data = [
      [...xs, ...path.map((point) => toTs(point.forecast_for))],
      [...close, ...pad(path.length)],
      cone("p50"),
      cone("p10"),
      cone("p90"),
    ];
    const accent = cssVar("--accent") || "#1d4ed8";
    const forecast = cssVar("--forecast") || "#f59e0b";
    const band = cssVar("--band") || "rgba(245,158,11,0.22)";
    const grid = { stroke: cssVar("--line") || "#e2e8f0", width: 1 };
    const axis = { stroke: cssVar("--muted") || "#64748b", grid, ticks: { stroke: grid.stroke } };
    const lastTs = xs[n - 1];
    const forecastTs = data[0][data[0].length - 1];
    // Leave room right of the last forecast day so the cone is not clipped by the plot edge.
    const xMax = forecastTs + Math.max(3 * 86400, (forecastTs - xs[0]) * 0.04);
    const muted = cssVar("--muted") || "#64748b";
    const markAsOf = (u) => {
      // A dashed line at the last close: left of it is history, right of it the forecast.
      const x = Math.round(u.valToPos(lastTs, "x", true));
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = muted;
      ctx.setLineDash([3, 4]);
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = muted;
      ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
      ctx.textAlign = "right";
      ctx.fillText("forecast →", x - 6 * devicePixelRatio, u.bbox.top + 14 * devicePixelRatio);
      ctx.restore();
    };
    const opts = {
      width: Math.max(320, el.clientWidth),
      height: CHART_HEIGHT,
      padding: [12, 16, 0, 4],
      cursor: { points: { size: 7 } },
      legend: { show: true, live: true },
      scales: { x: { time: true, range: (u, min) => [min, xMax] } },
      axes: [axis, { ...axis, size: 64, values: (u, vals) => vals.map((v) => price(v)) }],
      series: [
        { label: "Date", value: (u, v) => (v == null ? "–" : new Date(v * 1000).toISOString().slice(0, 10)) },
        { label: "Close", stroke: accent, width: 2, fill: "rgba(29,78,216,0.06)", value: (u, v) => price(v) },
        { label: "Forecast P50", stroke: forecast, width: 2, dash: [6, 4], points: { show: true, size: 6, fill: forecast }, value: (u, v) => price(v) },
        { label: "P10", stroke: "rgba(245,158,11,0.6)", width: 1, value: (u, v) => price(v) },
        { label: "P90", stroke: "rgba(245,158,11,0.6)", width: 1, value: (u, v) => price(v) },
      ],
      bands: [{ series: [4, 3], fill: band }],
      hooks: { draw: [markAsOf] },
    };
    chart = new uPlot(opts, data, el);
    el.dataset.kind = "uplot";
    el.dataset.points = String(n);
    el.dataset.cone = String(path.length);
  }

  function drawImage(ticker, p) {
    const el = $("chart");
    if (chart) {
      chart.destroy();
      chart = null;
    }
    const img = document.createElement("img");
    img.alt = `${ticker}: last closes with the forecast cone (P50 and the P10–P90 band for each day)`;
    el.dataset.cone = String(forecastPath(p).length);
    img.src = p.image_url || `/plot/${encodeURIComponent(ticker)}`;
    el.replaceChildren(img);
    el.dataset.kind = "image";
    return new Promise((resolve) => {
      img.onload = () => resolve(true);
      img.onerror = () => {
        el.replaceChildren(Object.assign(document.createElement("div"), { className: "empty", textContent: "No chart available" }));
        el.dataset.kind = "none";
        resolve(false);
      };
    });
  }

  window.addEventListener("resize", () => {
    if (chart) chart.setSize({ width: Math.max(320, $("chart").clientWidth), height: CHART_HEIGHT });
  });

  // --- flow ------------------------------------------------------------------------------------------
  async function showTicker(ticker) {
    const seq = ++requestSeq;
    currentTicker = ticker;
    document.body.dataset.state = "loading";
    document.body.dataset.ticker = ticker;
    const enc = encodeURIComponent(ticker);
    const [pred, hist, expl] = await Promise.allSettled([
      api(`/predict?ticker=${enc}`),
      hasHistory ? api(`/history/${enc}`) : Promise.reject(new ApiError(404, "no history endpoint")),
      api(`/explain/${enc}`),
    ]);
    if (seq !== requestSeq) return; // a newer selection won
    if (pred.status === "rejected") {
      banner(`No forecast for ${ticker}: ${pred.reason.message}`, "error");
      document.body.dataset.state = "error";
      return;
    }
    const p = pred.value;
    banner(null);
    renderForecast(p);
    setText("chart-title", `${p.ticker} · closing prices`);
    const path = forecastPath(p);
    const until = path[path.length - 1].forecast_for;
    setText(
      "chart-subtitle",
      path.length > 1
        ? `Last ${HISTORY_DAYS} trading days up to ${p.as_of}; forecast cone from ${p.forecast_for} to ${until}`
        : `Last ${HISTORY_DAYS} trading days up to ${p.as_of}, forecast for ${p.forecast_for}`,
    );
    const points = hist.status === "fulfilled" ? historyPoints(hist.value) : [];
    if (points.length >= 2 && typeof uPlot === "function") {
      drawChart(points, p);
    } else {
      await drawImage(ticker, p);
    }
    if (expl.status === "fulfilled") {
      renderExplain(expl.value);
    } else {
      renderExplain({});
      banner(`Importances unavailable: ${expl.reason.message}`);
    }
    if (seq === requestSeq) document.body.dataset.state = "ready";
    if (location.hash !== `#${ticker}`) history.replaceState(null, "", `#${enc}`);
  }

  function tickerList(body) {
    const list = Array.isArray(body) ? body : body.tickers || [];
    return list.map((t) => (typeof t === "string" ? t : t.ticker || t.symbol)).filter(Boolean);
  }

  async function start(attempt = 0) {
    let model;
    let tickers;
    try {
      [model, tickers] = await Promise.all([api("/model"), api("/tickers").then(tickerList)]);
      hasHistory = await api("/openapi.json").then(
        (spec) => Boolean(spec.paths && spec.paths["/history/{ticker}"]),
        () => false,
      );
    } catch (err) {
      const waiting = err.status === 503 || err.status === 0;
      banner(waiting ? "The model is still loading; retrying…" : `Cannot load the dashboard: ${err.message}`, waiting ? "info" : "error");
      document.body.dataset.state = waiting ? "loading" : "error";
      if (waiting && attempt < 120) setTimeout(() => start(attempt + 1), 2000);
      return;
    }
    renderModel(model);
    showBacktest();
    const select = $("ticker");
    select.replaceChildren(...tickers.map((t) => Object.assign(document.createElement("option"), { value: t, textContent: t })));
    select.disabled = tickers.length === 0;
    if (!tickers.length) {
      banner("The service has no tickers to forecast.", "error");
      document.body.dataset.state = "error";
      return;
    }
    const wanted = decodeURIComponent(location.hash.slice(1)).toUpperCase();
    select.value = tickers.includes(wanted) ? wanted : tickers[0];
    select.addEventListener("change", () => showTicker(select.value));
    await showTicker(select.value);
  }

  document.addEventListener("DOMContentLoaded", () => start());
})();
