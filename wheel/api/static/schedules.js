// timer-wheel dashboard, the Schedules view: every schedule through
// GET /schedules with its next occurrence and its last occurrence's
// status, refreshed every 5 s; Pause and Resume through PATCH. Uses
// dashboard.js's API helper (and its token); every value from the API is
// written as text, never HTML.
"use strict";

(function () {
  const PAGE_LIMIT = 100;
  const MAX_PAGES = 5;
  const REFRESH_MS = 5000;
  const { call, instant, onUnauthorized, whenReady } = window.timerWheel;

  const $ = (id) => document.getElementById(id);
  const integer = new Intl.NumberFormat();

  const view = { items: [], more: false, loading: null, busy: new Set() };
  let timer = 0;

  function say(text, bad) {
    const outcome = $("schedules-outcome");
    outcome.className = bad ? "outcome bad" : "outcome";
    outcome.textContent = text;
  }

  /** What a schedule is doing: active, paused, or ended. */
  function state(item) {
    if (item.paused) {
      return "paused";
    }
    return item.next_at ? "active" : "ended";
  }

  /** Active ones by next occurrence, then paused, then ended. */
  function order(a, b) {
    const rank = { active: 0, paused: 1, ended: 2 };
    const by = rank[state(a)] - rank[state(b)];
    if (by || state(a) !== "active") {
      return by || a.id.localeCompare(b.id);
    }
    return Date.parse(a.next_at) - Date.parse(b.next_at);
  }

  // ---- the list ----------------------------------------------------

  /** Load every schedule (a few pages: the listing goes shard by
   * shard), then draw them sorted. */
  function load() {
    if (view.loading) {
      return view.loading;
    }
    view.loading = (async () => {
      const items = [];
      let cursor = null;
      let pages = 0;
      do {
        let path = "/schedules?limit=" + PAGE_LIMIT;
        if (cursor) {
          path += "&cursor=" + encodeURIComponent(cursor);
        }
        const page = await call("GET", path);
        items.push(...(page.items || []));
        cursor = page.next_cursor;
        pages += 1;
      } while (cursor && pages < MAX_PAGES);
      view.items = items;
      view.more = Boolean(cursor);
      draw();
    })().catch((error) => {
      if (error && error.status === 401) {
        onUnauthorized();
      }
      say("Listing schedules failed: " +
        (error ? error.message : "?") + ".", true);
    }).finally(() => {
      view.loading = null;
      document.body.dataset.schedulesLoads =
        String(Number(document.body.dataset.schedulesLoads || 0) + 1);
      clearTimeout(timer);
      timer = setTimeout(load, REFRESH_MS);
    });
    return view.loading;
  }

  function draw() {
    const rows = view.items.slice().sort(order).map(row);
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 8;
      td.className = "empty";
      td.textContent = "No schedules.";
      tr.append(td);
      rows.push(tr);
    }
    $("schedules-rows").replaceChildren(...rows);
    $("schedules-note").textContent = view.more
      ? "Showing the first " + view.items.length + " schedules."
      : "";
  }

  function text(value, className, testid) {
    const td = document.createElement("td");
    td.textContent = value === undefined || value === null ? "" : value;
    if (className) {
      td.className = className;
    }
    if (testid) {
      td.dataset.testid = testid;
    }
    return td;
  }

  function row(item) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "schedule-row";
    tr.dataset.id = item.id;
    tr.dataset.state = state(item);
    const next = text(
      item.next_at ? instant(item.next_at) : "–", "", "schedule-next");
    next.title = item.next_at || "";
    const last = item.last;
    const lastCell = text(
      last ? (last.status || "expired") + ", " + instant(last.scheduled_for)
        : "–",
      "", "schedule-last");
    lastCell.dataset.status = last ? last.status || "expired" : "";
    const counts = text(
      integer.format(item.fired) + " / " + integer.format(item.failed) +
      " / " + integer.format(item.missed), "num", "schedule-counts");
    const actions = document.createElement("td");
    actions.append(buttons(item));
    tr.append(
      text(item.id, "mono"),
      text(item.cron + (item.timezone === "UTC" ? "" : " " + item.timezone),
        "mono"),
      text(item.url, "url"),
      text(state(item), "", "schedule-state"),
      next,
      lastCell,
      counts,
      actions
    );
    return tr;
  }

  function buttons(item) {
    const box = document.createElement("div");
    box.className = "actions";
    const paused = item.paused;
    const label = paused ? "Resume" : "Pause";
    if (!paused && !item.next_at) {
      return box; // ended: nothing to pause
    }
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.testid = paused ? "resume-button" : "pause-button";
    button.textContent = label;
    button.setAttribute("aria-label", label + " schedule " + item.id);
    button.disabled = view.busy.has(item.id);
    button.addEventListener("click", () => setPaused(item, !paused));
    box.append(button);
    return box;
  }

  // ---- actions -----------------------------------------------------

  async function setPaused(item, paused) {
    if (view.busy.has(item.id)) {
      return;
    }
    view.busy.add(item.id);
    draw();
    try {
      await call("PATCH", "/schedules/" + encodeURIComponent(item.id),
        { paused });
      say("Schedule " + item.id + (paused ? " is paused." : " is resumed."));
    } catch (error) {
      if (error && error.status === 401) {
        onUnauthorized();
      }
      say((paused ? "Pausing" : "Resuming") + " schedule " + item.id +
        " failed: " + (error ? error.message : "?") + ".", true);
    } finally {
      view.busy.delete(item.id);
      await load();
    }
  }

  // ---- start -------------------------------------------------------

  $("schedules-reload").addEventListener("click", () => load());
  whenReady(() => load());
})();
