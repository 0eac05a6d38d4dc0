// timer-wheel dashboard: reads /stats and /dead-letters every 5 seconds
// and draws them; plain DOM and inline SVG, no library, no external
// resource. Every value from the API is written as text, never as HTML.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const FETCH_TIMEOUT_MS = 8000;
  const DEAD_LETTER_LIMIT = 50;
  const TOKEN_KEY = "timer-wheel.token";
  const SVG = "http://www.w3.org/2000/svg";
  const OUTCOMES = ["fired", "retried", "failed", "deferred"];

  const $ = (id) => document.getElementById(id);
  const integer = new Intl.NumberFormat(undefined, {
    maximumFractionDigits: 0,
  });
  const oneDecimal = new Intl.NumberFormat(undefined, {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });
  const axisNumber = new Intl.NumberFormat(undefined, {
    maximumFractionDigits: 1,
  });
  const clock = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    hour12: false,
  });
  const clockSeconds = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  });

  const state = {
    refreshes: 0,
    timer: null,
    running: null,
    needsToken: false,
    stats: null,
    retrying: new Set(),
    whenReady: [],
  };

  /** An API answer that was not 2xx (or no answer at all). */
  class ApiError extends Error {
    constructor(path, status, message) {
      super(message);
      this.path = path;
      this.status = status;
    }
  }

  // ---- token --------------------------------------------------------

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  function setToken(value) {
    try {
      if (value) {
        sessionStorage.setItem(TOKEN_KEY, value);
      } else {
        sessionStorage.removeItem(TOKEN_KEY);
      }
    } catch (_) {
      // Storage disabled: the token lasts until the page is reloaded.
    }
    $("forget-token").hidden = !value;
  }

  function askForToken(refused) {
    state.needsToken = true;
    document.body.dataset.state = "auth";
    $("updated-label").textContent = "Waiting for an API token";
    $("updated-at").textContent = "";
    $("token-refused").hidden = !refused;
    $("token-form").hidden = false;
    hideBanner();
    $("token").focus();
  }

  // ---- HTTP ---------------------------------------------------------

  async function call(method, path, json) {
    const headers = { Accept: "application/json" };
    const bearer = token();
    if (bearer) {
      headers.Authorization = "Bearer " + bearer;
    }
    const options = {
      method,
      headers,
      cache: "no-store",
      credentials: "same-origin",
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    };
    if (json !== undefined && json !== null) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (exc) {
      const why =
        exc && exc.name === "TimeoutError"
          ? "no answer within " + FETCH_TIMEOUT_MS / 1000 + " s"
          : "the API could not be reached";
      throw new ApiError(path, 0, why);
    }
    let body = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) {
      try {
        body = await response.json();
      } catch (_) {
        body = null;
      }
    }
    if (!response.ok) {
      let message = response.status + " " + (response.statusText || "");
      if (body && (body.title || body.detail)) {
        message = response.status + " " + (body.title || "");
        if (body.detail) {
          message += ": " + body.detail;
        }
      }
      throw new ApiError(path, response.status, message.trim());
    }
    if (response.status === 204) {
      return null;
    }
    if (body === null) {
      throw new ApiError(path, response.status, "the answer is not JSON");
    }
    return body;
  }

  // ---- refresh loop -------------------------------------------------

  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(tick, REFRESH_MS);
  }

  function tick() {
    // Asking for a token: do not knock on the door every 5 s.
    if (state.needsToken && !token()) {
      schedule();
      return;
    }
    refresh();
  }

  /** Fetch and draw everything once; concurrent calls share one run. */
  function refresh() {
    if (state.running) {
      return state.running;
    }
    state.running = load().catch((error) => {
      // A drawing bug must not stop the loop (nor go unreported).
      document.body.dataset.state = "error";
      showBanner(describe(error));
    }).finally(() => {
      state.running = null;
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      schedule();
    });
    return state.running;
  }

  async function load() {
    const [stats, dead] = await Promise.allSettled([
      call("GET", "/stats"),
      call("GET", "/dead-letters?limit=" + DEAD_LETTER_LIMIT),
    ]);
    const failures = [stats, dead].filter((r) => r.status === "rejected");
    if (failures.some((r) => r.reason && r.reason.status === 401)) {
      const refused = Boolean(token());
      setToken("");
      askForToken(refused);
      return;
    }
    if (stats.status === "fulfilled") {
      drawStats(stats.value);
    }
    if (dead.status === "fulfilled") {
      drawDeadLetters(dead.value.items || []);
    }
    if (failures.length) {
      document.body.dataset.state = "error";
      if (state.stats) {
        $("updated-label").textContent = "Showing the data of";
      }
      showBanner(
        failures
          .map((r) => describe(r.reason))
          .join(" ") + " Retrying every " + REFRESH_MS / 1000 + " s."
      );
      return;
    }
    state.needsToken = false;
    $("token-form").hidden = true;
    document.body.dataset.state = "ok";
    hideBanner();
    // The Timers view starts once the API answers (with a token, if one
    // is needed), not with a 401 of its own.
    for (const start of state.whenReady.splice(0)) {
      start();
    }
  }

  function describe(error) {
    if (error instanceof ApiError) {
      return "Could not load " + error.path.split("?")[0] + ": " +
        error.message + ".";
    }
    return "Could not draw the dashboard: " + String(error) + ".";
  }

  function showBanner(text) {
    const banner = $("error-banner");
    banner.textContent = text;
    banner.hidden = false;
  }

  function hideBanner() {
    const banner = $("error-banner");
    banner.hidden = true;
    banner.textContent = "";
  }

  // ---- figures and tables -------------------------------------------

  function drawStats(stats) {
    state.stats = stats;
    const at = Date.parse(stats.at);
    setText("pending", integer.format(stats.pending));
    setText("ready", integer.format(stats.ready));
    setText("in-flight", integer.format(stats.in_flight));
    setText("oldest-overdue", oneDecimal.format(stats.oldest_overdue_s));
    setText("dead-letters-count", integer.format(stats.dead_letters));
    $("dead-letters-figure").classList.toggle("alert", stats.dead_letters > 0);
    const lateness = stats.lateness || {};
    setText("lateness-count", integer.format(lateness.count || 0));
    setText("lateness-noun", lateness.count === 1 ? "timer" : "timers");
    for (const p of ["p50", "p90", "p99"]) {
      const value = lateness[p + "_ms"];
      setText(p, value === null || value === undefined
        ? "–"
        : oneDecimal.format(value));
    }
    const updated = $("updated-at");
    updated.dateTime = stats.at;
    updated.textContent = Number.isNaN(at) ? stats.at : clockSeconds.format(at);
    $("updated-label").textContent = "Updated";
    drawProcesses(stats, at);
    drawCharts(stats);
  }

  function drawCharts(stats) {
    drawMinutes(stats.minutes || []);
    drawBacklog("chart-backlog-hour", stats.backlog_hour || [], {
      step: "minute",
      ticks: [0, 15, 30, 45, 60],
      tickLabel: (i) => (i === 0 ? "now" : "+" + i + " min"),
      barLabel: (i) => "in " + i + "–" + (i + 1) + " min",
      axis: "minutes from now",
    });
    drawBacklog("chart-backlog-day", stats.backlog_day || [], {
      step: "hour",
      ticks: [0, 6, 12, 18, 24],
      tickLabel: (i) => (i === 0 ? "now" : "+" + i + " h"),
      barLabel: (i) => "in " + i + "–" + (i + 1) + " h",
      axis: "hours from now",
    });
  }

  function setText(id, text) {
    const element = $(id);
    if (element.textContent !== text) {
      element.textContent = text;
    }
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    return td;
  }

  function emptyRow(columns, text) {
    const tr = document.createElement("tr");
    const td = cell(text, "empty");
    td.colSpan = columns;
    tr.append(td);
    return tr;
  }

  function drawProcesses(stats, at) {
    const rows = [];
    const roles = [
      ["ticker", stats.tickers || []],
      ["worker", stats.workers || []],
    ];
    for (const [role, members] of roles) {
      for (const member of members) {
        const tr = document.createElement("tr");
        tr.dataset.testid = "process-row";
        tr.dataset.role = role;
        tr.dataset.name = member.name;
        const beat = Date.parse(member.last_beat_at);
        const ago = Math.max(0, (at - beat) / 1000);
        const since = cell(
          Number.isNaN(ago) ? "?" : oneDecimal.format(ago),
          "num beat"
        );
        since.dataset.testid = "since-beat";
        since.title = "last beat at " + member.last_beat_at;
        tr.append(
          cell(role),
          cell(member.name, "mono"),
          cell(integer.format(member.shards), "num"),
          since
        );
        rows.push(tr);
      }
    }
    if (!rows.length) {
      rows.push(emptyRow(4, "No ticker or worker is beating."));
    }
    $("processes").replaceChildren(...rows);
  }

  function drawDeadLetters(items) {
    const rows = items.map((item) => {
      const tr = document.createElement("tr");
      tr.dataset.testid = "dead-letter-row";
      tr.dataset.id = item.id;
      const id = cell(item.id, "mono");
      id.dataset.testid = "dead-letter-id";
      const when = document.createElement("td");
      const time = document.createElement("time");
      time.dateTime = item.at;
      const at = Date.parse(item.at);
      time.textContent = Number.isNaN(at)
        ? item.at
        : clockSeconds.format(at) + " (" + ago(at) + ")";
      time.title = item.at;
      when.append(time);
      const action = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.testid = "retry-button";
      button.textContent = state.retrying.has(item.id)
        ? "Retrying…"
        : "Retry";
      button.disabled = state.retrying.has(item.id);
      button.setAttribute("aria-label", "Retry timer " + item.id);
      button.addEventListener("click", () => retry(item.id, button));
      action.append(button);
      tr.append(
        id,
        cell(item.url, "url"),
        cell(integer.format(item.attempts), "num"),
        cell(item.error || "", "error"),
        when,
        action
      );
      return tr;
    });
    if (!rows.length) {
      rows.push(emptyRow(6, "No dead letters."));
    }
    $("dead-letters").replaceChildren(...rows);
    const total = Number($("dead-letters-count").textContent.replace(/\D/g, ""));
    $("dead-letters-note").textContent =
      items.length >= DEAD_LETTER_LIMIT && total > items.length
        ? "Showing the newest " + items.length + " of " +
          integer.format(total) + "."
        : "";
  }

  function ago(ms) {
    const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (seconds < 60) {
      return seconds + " s ago";
    }
    if (seconds < 3600) {
      return Math.floor(seconds / 60) + " min ago";
    }
    if (seconds < 86400) {
      return Math.floor(seconds / 3600) + " h ago";
    }
    return Math.floor(seconds / 86400) + " d ago";
  }

  async function retry(id, button) {
    if (state.retrying.has(id)) {
      return;
    }
    state.retrying.add(id);
    button.disabled = true;
    button.textContent = "Retrying…";
    const outcome = $("retry-outcome");
    try {
      await call("POST", "/timer/" + encodeURIComponent(id) + "/retry");
      outcome.className = "outcome";
      outcome.textContent = "Timer " + id + " is queued to fire again.";
    } catch (error) {
      if (error.status === 401) {
        setToken("");
        askForToken(true);
      }
      outcome.className = "outcome bad";
      outcome.textContent = "Retry of timer " + id + " failed: " +
        error.message + ".";
    } finally {
      state.retrying.delete(id);
      button.disabled = false;
      button.textContent = "Retry";
    }
    outcome.dataset.id = id;
    await refresh();
  }

  // ---- charts -------------------------------------------------------

  function svgElement(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) {
      element.setAttribute(key, String(value));
    }
    if (text !== undefined) {
      element.textContent = text;
    }
    return element;
  }

  /** A round axis maximum at or above ``value`` (2, 5 or 10 × 10^n, so
   * the middle gridline is a whole number or a half). */
  function niceMax(value) {
    if (!(value > 2)) {
      return 2;
    }
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (step * power >= value) {
        return step * power;
      }
    }
    return 10 * power;
  }

  /** The plot box of a chart drawn ``width`` pixels wide (1 unit = 1 px,
   * so text keeps its size whatever the width). */
  function layout(host, tall) {
    const width = Math.max(300, Math.round(host.clientWidth || 600));
    return { width, height: tall ? 220 : 190, left: 58, right: 12, top: 10,
      bottom: 40 };
  }

  /** An empty chart: gridlines, y ticks and axis titles. */
  function frame(box, title, description, yMax, xTitle, yTitle) {
    const { width, height, left, right, top, bottom } = box;
    const svg = svgElement("svg", {
      viewBox: "0 0 " + width + " " + height,
      role: "img",
      "aria-label": title + ". " + description,
    });
    svg.append(svgElement("title", {}, title));
    svg.append(svgElement("desc", {}, description));
    const plotHeight = height - top - bottom;
    for (const fraction of [0, 0.5, 1]) {
      const y = top + plotHeight * (1 - fraction);
      svg.append(svgElement("line", {
        x1: left, x2: width - right, y1: y, y2: y,
        class: fraction === 0 ? "baseline" : "gridline",
      }));
      svg.append(svgElement("text", {
        x: left - 6, y: y + 4, "text-anchor": "end",
      }, axisNumber.format(yMax * fraction)));
    }
    svg.append(svgElement("text", {
      class: "axis-title", x: left + (width - left - right) / 2,
      y: height - 4, "text-anchor": "middle",
    }, xTitle));
    svg.append(svgElement("text", {
      class: "axis-title", x: 12, y: top + plotHeight / 2,
      "text-anchor": "middle",
      transform: "rotate(-90 12 " + (top + plotHeight / 2) + ")",
    }, yTitle));
    return svg;
  }

  function xTick(svg, box, x, label) {
    const baseline = box.height - box.bottom;
    svg.append(svgElement("line", {
      x1: x, x2: x, y1: baseline, y2: baseline + 4, class: "baseline",
    }));
    // The last label ends at the plot's edge rather than past it.
    const anchor = x > box.width - box.right - 20 ? "end" : "middle";
    svg.append(svgElement("text", {
      x: anchor === "end" ? box.width - 2 : x, y: baseline + 16,
      "text-anchor": anchor,
    }, label));
  }

  /** A collapsed table of the chart's numbers, for screen readers. */
  function dataTable(caption, headings, rows) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Show the numbers";
    const table = document.createElement("table");
    table.className = "data";
    const cap = document.createElement("caption");
    cap.className = "visually-hidden";
    cap.textContent = caption;
    const head = document.createElement("thead");
    const headRow = document.createElement("tr");
    for (const heading of headings) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = heading;
      headRow.append(th);
    }
    head.append(headRow);
    const body = document.createElement("tbody");
    for (const row of rows) {
      const tr = document.createElement("tr");
      row.forEach((value, i) => tr.append(cell(value, i ? "num" : "")));
      body.append(tr);
    }
    table.append(cap, head, body);
    details.append(summary, table);
    return details;
  }

  function replaceChart(id, svg, table) {
    const host = $(id);
    const open = host.querySelector("details[open]") !== null;
    if (table && open) {
      table.open = true;
    }
    host.replaceChildren(svg, ...(table ? [table] : []));
  }

  function drawMinutes(minutes) {
    const totals = Object.fromEntries(OUTCOMES.map((k) => [k, 0]));
    let peak = 0;
    for (const minute of minutes) {
      let sum = 0;
      for (const k of OUTCOMES) {
        totals[k] += minute[k] || 0;
        sum += minute[k] || 0;
      }
      peak = Math.max(peak, sum);
    }
    for (const k of OUTCOMES) {
      setText("total-" + k, "(" + integer.format(totals[k]) + ")");
    }
    const yMax = niceMax(peak);
    const description = "Per-minute counts over the last " +
      minutes.length + " minutes: " +
      OUTCOMES.map((k) => integer.format(totals[k]) + " " + k).join(", ") +
      ".";
    const box = layout($("chart-minutes"), true);
    const svg = frame(box, "Outcomes per minute", description, yMax,
      "minute (local time)", "timers per minute");
    const { width, height, left, right, top, bottom } = box;
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    const slot = plotWidth / Math.max(minutes.length, 1);
    const barWidth = Math.max(1, slot * 0.78);
    minutes.forEach((minute, i) => {
      const x = left + i * slot + (slot - barWidth) / 2;
      const group = svgElement("g", { "data-testid": "minute-bar" });
      const at = Date.parse(minute.minute_at);
      const label = Number.isNaN(at) ? minute.minute_at : clock.format(at);
      group.append(svgElement("title", {}, label + ": " +
        OUTCOMES.map((k) => k + " " + (minute[k] || 0)).join(", ")));
      // A full-height target so the tooltip shows over short bars too.
      group.append(svgElement("rect", {
        x: left + i * slot, y: top, width: slot, height: plotHeight,
        class: "hit",
      }));
      let y = top + plotHeight;
      for (const k of OUTCOMES) {
        const value = minute[k] || 0;
        if (!value) {
          continue;
        }
        const h = (value / yMax) * plotHeight;
        y -= h;
        group.append(svgElement("rect", {
          x, y, width: barWidth, height: Math.max(h, 0.5), class: k,
        }));
      }
      svg.append(group);
      const fromEnd = minutes.length - 1 - i;
      if (fromEnd % 5 === 0) {
        xTick(svg, box, left + i * slot + slot / 2, label);
      }
    });
    const table = dataTable(
      "Outcomes per minute",
      ["Minute", ...OUTCOMES.map((k) => k[0].toUpperCase() + k.slice(1))],
      minutes.map((minute) => {
        const at = Date.parse(minute.minute_at);
        return [
          Number.isNaN(at) ? minute.minute_at : clock.format(at),
          ...OUTCOMES.map((k) => integer.format(minute[k] || 0)),
        ];
      })
    );
    replaceChart("chart-minutes", svg, table);
  }

  function drawBacklog(id, counts, options) {
    const total = counts.reduce((a, b) => a + b, 0);
    const peak = Math.max(0, ...counts);
    const yMax = niceMax(peak);
    const description = integer.format(total) + " timers due, at most " +
      integer.format(peak) + " in one " + options.step + ".";
    const box = layout($(id), false);
    const svg = frame(box, "Timers due per " + options.step, description,
      yMax, options.axis, "timers due");
    const { width, height, left, right, top, bottom } = box;
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    const slot = plotWidth / Math.max(counts.length, 1);
    const barWidth = Math.max(1, slot * 0.8);
    counts.forEach((count, i) => {
      const group = svgElement("g", { "data-testid": "backlog-bar" });
      group.append(svgElement("title", {},
        options.barLabel(i) + ": " + integer.format(count)));
      group.append(svgElement("rect", {
        x: left + i * slot, y: top, width: slot, height: plotHeight,
        class: "hit",
      }));
      if (count > 0) {
        const h = Math.max((count / yMax) * plotHeight, 0.5);
        group.append(svgElement("rect", {
          x: left + i * slot + (slot - barWidth) / 2,
          y: top + plotHeight - h, width: barWidth, height: h,
          class: "backlog",
        }));
      }
      svg.append(group);
    });
    for (const tick of options.ticks) {
      if (tick <= counts.length) {
        xTick(svg, box, left + tick * slot, options.tickLabel(tick));
      }
    }
    const table = dataTable(
      "Timers due per " + options.step,
      [options.step === "hour" ? "Hour" : "Minute", "Timers due"],
      counts.map((count, i) => [options.barLabel(i), integer.format(count)])
    );
    replaceChart(id, svg, table);
  }

  // ---- shared with the Timers and Schedules views ---------------------

  const when = new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "short",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  });

  window.timerWheel = {
    call,
    /** An RFC 3339 instant from the API in the reader's zone ("" for
     * none; the text itself if it does not parse). */
    instant(text) {
      if (!text) {
        return "";
      }
      const at = Date.parse(text);
      return Number.isNaN(at) ? text : when.format(at);
    },
    onUnauthorized() {
      setToken("");
      askForToken(true);
    },
    /** Run ``start`` once the API has answered the dashboard. */
    whenReady(start) {
      if (document.body.dataset.state === "ok") {
        start();
      } else {
        state.whenReady.push(start);
      }
    },
  };

  // ---- start --------------------------------------------------------

  function start() {
    $("forget-token").hidden = !token();
    $("refresh").addEventListener("click", () => refresh());
    $("forget-token").addEventListener("click", () => {
      setToken("");
      $("token").value = "";
      refresh();
    });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (!value) {
        return;
      }
      setToken(value);
      $("token").value = "";
      $("token-form").hidden = true;
      $("token-refused").hidden = true;
      state.needsToken = false;
      refresh();
    });
    let resizing = 0;
    window.addEventListener("resize", () => {
      cancelAnimationFrame(resizing);
      resizing = requestAnimationFrame(() => {
        if (state.stats) {
          drawCharts(state.stats);
        }
      });
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        refresh();
      }
    });
    refresh();
  }

  start();
})();
