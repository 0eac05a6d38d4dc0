// timer-wheel dashboard, the Timers view: find a timer by id, list
// pending (due soonest) and failed timers through GET /timers, and
// cancel, retry or reschedule them. Uses dashboard.js's API helper (and
// its token); every value from the API is written as text, never HTML.
"use strict";

(function () {
  const PAGE_LIMIT = 100;
  const MAX_PAGES = 40;
  const SHOWN = 100;
  // The listing goes shard by shard, not by due time across shards: the
  // pending tab asks for one window of due times after another (due
  // within a minute, an hour, a day, later), each to its end, so what it
  // shows is the soonest, but for the window it stopped in. An empty
  // window costs a page per 8 shards.
  const WINDOWS_S = [60, 3600, 86400, null];
  const { call, instant, onUnauthorized, whenReady } = window.timerWheel;

  const $ = (id) => document.getElementById(id);

  const view = {
    tab: "pending",
    items: [],
    cursor: null,
    window: 0,
    anchor: 0,
    ended: false,
    generation: 0,
    loading: null,
    busy: new Set(),
  };

  /** When a timer fires next: its retry, else its due time. */
  function nextDue(item) {
    return item.next_attempt_at || item.due_at;
  }

  function say(text, bad) {
    const outcome = $("timers-outcome");
    outcome.className = bad ? "outcome bad" : "outcome";
    outcome.textContent = text;
  }

  function failed(what, error) {
    if (error && error.status === 401) {
      onUnauthorized();
    }
    say(what + " failed: " + (error ? error.message : "?") + ".", true);
  }

  // ---- the list ----------------------------------------------------

  /** The due-time bounds of the pending tab's current window. */
  function windowQuery() {
    const at = (i) => new Date(view.anchor + WINDOWS_S[i] * 1000);
    let query = "";
    if (view.window > 0) {
      query += "&due_after=" + encodeURIComponent(
        at(view.window - 1).toISOString());
    }
    if (WINDOWS_S[view.window] !== null) {
      query += "&due_before=" + encodeURIComponent(
        at(view.window).toISOString());
    }
    return query;
  }

  /** Whether the listing has more to give. */
  function more() {
    return !view.ended;
  }

  /** Load the tab's timers: pages until a screenful (pending: window by
   * window of due times, see WINDOWS_S), then sorted. A fresh load
   * (not `again`) replaces one under way, which stops at its next page:
   * only the newest load writes the list. */
  function load(again) {
    if (view.loading && again) {
      return view.loading;
    }
    const tab = view.tab;
    view.generation += 1;
    const generation = view.generation;
    if (!again) {
      view.items = [];
      view.cursor = null;
      view.window = 0;
      view.anchor = Date.now();
      view.ended = false;
    }
    const loading = (async () => {
      let pages = 0;
      const wanted = view.items.length + SHOWN;
      do {
        let path = "/timers?status=" + tab + "&limit=" + PAGE_LIMIT;
        if (tab === "pending") {
          path += windowQuery();
        }
        if (view.cursor) {
          path += "&cursor=" + encodeURIComponent(view.cursor);
        }
        const page = await call("GET", path);
        if (generation !== view.generation) {
          return;
        }
        view.items.push(...(page.items || []));
        view.cursor = page.next_cursor;
        pages += 1;
        if (!view.cursor) {
          if (tab === "pending" && view.window < WINDOWS_S.length - 1) {
            view.window += 1;
          } else {
            view.ended = true;
          }
        }
      } while (more() && pages < MAX_PAGES && view.items.length < wanted);
      draw();
    })().catch((error) => {
      if (generation === view.generation) {
        failed("Listing " + tab + " timers", error);
      }
    }).finally(() => {
      if (view.loading === loading) {
        view.loading = null;
        document.body.dataset.timersLoads =
          String(Number(document.body.dataset.timersLoads || 0) + 1);
      }
    });
    view.loading = loading;
    return loading;
  }

  function draw() {
    const items = view.items.slice();
    if (view.tab === "pending") {
      items.sort((a, b) => Date.parse(nextDue(a)) - Date.parse(nextDue(b)));
    }
    const rows = items.map(row);
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 7;
      td.className = "empty";
      td.textContent = view.tab === "pending"
        ? "No pending timers."
        : "No failed timers.";
      tr.append(td);
      rows.push(tr);
    }
    $("timers-rows").replaceChildren(...rows);
    $("timers-more").hidden = !more();
    $("timers-note").textContent = more()
      ? "Showing " + items.length + " timers" +
        (view.tab === "pending" ? ", the soonest due first" : "") +
        // Past the end of a window, a later one may be empty.
        (view.cursor ? "; more follow." : "; more may follow.")
      : "";
  }

  function text(value, className) {
    const td = document.createElement("td");
    td.textContent = value === undefined || value === null ? "" : value;
    if (className) {
      td.className = className;
    }
    return td;
  }

  function row(item) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "timer-row";
    tr.dataset.id = item.id;
    const due = text(instant(nextDue(item)));
    due.dataset.testid = "timer-due";
    due.title = nextDue(item);
    const actions = document.createElement("td");
    actions.append(buttons(item));
    tr.append(
      text(item.id, "mono"),
      text(item.status),
      due,
      text(item.url, "url"),
      text(item.attempts, "num"),
      text(item.last_error, "error"),
      actions
    );
    return tr;
  }

  /** The actions a timer's status allows. */
  function buttons(item) {
    const box = document.createElement("div");
    box.className = "actions";
    const add = (label, testid, act) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.testid = testid;
      button.textContent = label;
      button.setAttribute("aria-label", label + " timer " + item.id);
      button.disabled = view.busy.has(item.id);
      button.addEventListener("click", () => act(item, box));
      box.append(button);
    };
    if (item.status === "pending") {
      add("Cancel", "cancel-button", cancel);
      add("Reschedule", "reschedule-button", askTime);
    } else if (item.status === "failed") {
      add("Retry", "timer-retry-button", retry);
    }
    return box;
  }

  // ---- actions -----------------------------------------------------

  async function act(item, what, method, path, body, done) {
    if (view.busy.has(item.id)) {
      return;
    }
    view.busy.add(item.id);
    for (const button of document.querySelectorAll(
      `[data-id="${CSS.escape(item.id)}"] button`)) {
      button.disabled = true;
    }
    try {
      await call(method, path, body);
      say(done);
    } catch (error) {
      failed(what + " of timer " + item.id, error);
    } finally {
      view.busy.delete(item.id);
      await Promise.all([load(false), refind(item.id)]);
    }
  }

  function cancel(item) {
    return act(item, "Cancel", "DELETE", "/timer/" + enc(item.id), null,
      "Timer " + item.id + " is cancelled.");
  }

  function retry(item) {
    return act(item, "Retry", "POST", "/timer/" + enc(item.id) + "/retry",
      null, "Timer " + item.id + " is queued to fire again.");
  }

  /** Replace a timer's actions with a form asking for its new time. */
  function askTime(item, box) {
    const form = document.createElement("form");
    form.className = "inline-form";
    form.dataset.testid = "reschedule-form";
    const label = document.createElement("label");
    const id = "new-time-" + item.id;
    label.htmlFor = id;
    label.textContent = "New time: seconds from now, or an instant";
    const input = document.createElement("input");
    input.id = id;
    input.className = "short";
    input.dataset.testid = "reschedule-input";
    input.placeholder = "300 or 2026-12-01T16:00:00Z";
    input.required = true;
    const move = document.createElement("button");
    move.type = "submit";
    move.dataset.testid = "reschedule-submit";
    move.textContent = "Move";
    const back = document.createElement("button");
    back.type = "button";
    back.className = "secondary";
    back.textContent = "Back";
    back.addEventListener("click", () => box.replaceWith(buttons(item)));
    form.append(label, input, move, back);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      const body = /^\d+$/.test(value)
        ? { seconds: Number(value) }
        : { at: value };
      act(item, "Reschedule", "PATCH", "/timer/" + enc(item.id), body,
        "Timer " + item.id + " moved to " + describeTime(body) + ".");
    });
    box.replaceChildren(form);
    input.focus();
  }

  function describeTime(body) {
    return body.seconds !== undefined
      ? body.seconds + " s from now"
      : body.at;
  }

  function enc(id) {
    return encodeURIComponent(id);
  }

  // ---- search ------------------------------------------------------

  let found = null;

  async function find(id) {
    const box = $("timer-found");
    try {
      const timer = await call("GET", "/timer/" + enc(id));
      found = timer.id;
      drawFound(timer);
    } catch (error) {
      found = null;
      box.hidden = true;
      if (error.status === 404) {
        say("No timer with id " + id + ".", true);
      } else {
        failed("Reading timer " + id, error);
      }
    }
  }

  function refind(id) {
    return found === id ? find(id) : null;
  }

  function drawFound(timer) {
    const box = $("timer-found");
    box.className = "found";
    const list = document.createElement("dl");
    const line = (name, value, testid) => {
      if (value === undefined || value === null || value === "") {
        return;
      }
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      if (testid) {
        dd.dataset.testid = testid;
      }
      list.append(dt, dd);
    };
    line("Id", timer.id, "found-id");
    line("Status", timer.status, "found-status");
    line("Due", instant(timer.due_at), "found-due");
    line("Next attempt", instant(timer.next_attempt_at));
    line("Time left", timer.time_left + " s", "found-time-left");
    line("URL", timer.url);
    line("Attempts", timer.attempts, "found-attempts");
    line("Fired", instant(timer.fired_at));
    line("Finished", instant(timer.finished_at));
    line("Last error", timer.last_error);
    if (timer.request) {
      const headers = Object.entries(timer.request.headers || {})
        .map(([k, v]) => k + ": " + v).join("; ");
      line("Request", timer.request.method +
        (headers ? " with " + headers : "") +
        (timer.request.body !== undefined && timer.request.body !== null
          ? ", body of " + timer.request.body.length + " characters"
          : ""), "found-request");
    }
    const history = document.createElement("table");
    history.className = "data";
    history.dataset.testid = "found-history";
    const caption = document.createElement("caption");
    caption.textContent = "Attempts, oldest first";
    const head = document.createElement("tr");
    for (const name of ["Sent", "Status", "Error", "Took (ms)"]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = name;
      head.append(th);
    }
    const thead = document.createElement("thead");
    thead.append(head);
    const tbody = document.createElement("tbody");
    for (const attempt of timer.history || []) {
      const tr = document.createElement("tr");
      tr.dataset.testid = "history-row";
      tr.append(
        text(instant(attempt.at)),
        text(attempt.status, "num"),
        text(attempt.error, "error"),
        text(attempt.duration_ms, "num")
      );
      tbody.append(tr);
    }
    history.append(caption, thead, tbody);
    const actions = buttons(timer);
    actions.dataset.id = timer.id;
    box.replaceChildren(list, history, actions);
    box.hidden = false;
  }

  // ---- start -------------------------------------------------------

  function select(tab) {
    view.tab = tab;
    for (const name of ["pending", "failed"]) {
      $("tab-" + name).setAttribute("aria-selected", String(name === tab));
    }
    $("timers-caption").textContent = tab === "pending"
      ? "Pending timers, due soonest first"
      : "Failed timers, newest first per shard";
    load(false);
  }

  $("tab-pending").addEventListener("click", () => select("pending"));
  $("tab-failed").addEventListener("click", () => select("failed"));
  $("timers-reload").addEventListener("click", () => load(false));
  $("timers-more").addEventListener("click", () => load(true));
  $("timer-search").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("timer-id").value.trim().toLowerCase();
    if (id) {
      find(id);
    }
  });
  whenReady(() => load(false));
})();
