// prober's status page: updates the server-rendered page in place from its JSON, filters and sorts rows.
// No framework and no build step. Text is only ever written with textContent and attributes, never as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const RANK = { unhealthy: 0, degraded: 1, unknown: 2, ok: 3 };
  const WORDS = { "-": "none", o: "ok", x: "unknown", d: "degraded", u: "unhealthy" };
  const body = document.body;
  const poll = Math.max(1, parseFloat(body.dataset.poll || "15")) * 1000;
  let skew = 0; // the daemon's clock minus this browser's, ms (from the JSON's "now")

  // --- words, as the server writes them (prober/page/view.py) --------------------------------------------
  function ago(at, now) {
    if (at === null || at === undefined || at === "") return "never";
    const s = Math.max(0, now - Number(at));
    if (s < 60) return Math.floor(s) + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  function percent(ratio) {
    if (ratio === null || ratio === undefined) return "—";
    if (ratio >= 1) return "100 %";
    return (Math.floor(ratio * 10000) / 100).toFixed(2) + " %";
  }
  function latency(ms) {
    if (ms === null || ms === undefined) return "—";
    return ms >= 10 ? ms.toFixed(0) + " ms" : ms.toFixed(1) + " ms";
  }
  function clock(at) {
    if (at === null || at === undefined) return "—";
    return new Date(at * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }
  function cert(days) {
    if (days === null || days === undefined) return "—";
    return days < 0 ? "expired " + (-days).toFixed(1) + " d ago" : days.toFixed(1) + " d left";
  }
  function setText(element, text) {
    if (element && element.textContent !== text) element.textContent = text;
  }

  // --- shapes, as prober/page/svg.py draws them -----------------------------------------------------------
  // a state pill: colour from its class, icon from page.css (::before), the word as its text
  function pill(element, state) {
    if (!element) return;
    const extra = element.classList.contains("big") ? " big" : element.classList.contains("small") ? " small" : "";
    const wanted = "pill s-" + state + extra;
    if (element.className !== wanted) element.className = wanted;
    setText(element, state);
  }
  function newPill(state, extra) {
    const span = document.createElement("span");
    span.className = "pill s-" + state + (extra || "");
    span.textContent = state;
    return span;
  }
  function spans(letters) {
    const out = [];
    let start = 0;
    for (let i = 1; i <= letters.length; i++) {
      if (i === letters.length || letters[i] !== letters[start]) {
        out.push([start, i - start, WORDS[letters[start]] || "none"]);
        start = i;
      }
    }
    return out;
  }
  function drawTimeline(svg, letters) {
    if (!svg || svg.dataset.letters === letters) return;
    svg.dataset.letters = letters;
    const rects = spans(letters).map(function (span) {
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", "t-" + span[2]);
      rect.setAttribute("x", span[0]);
      rect.setAttribute("width", span[1]);
      rect.setAttribute("height", "10");
      return rect;
    });
    svg.setAttribute("viewBox", "0 0 " + letters.length + " 10");
    svg.replaceChildren.apply(svg, rects);
    const step = svg.dataset.step || "min";
    const words = spans(letters).filter(function (s) { return s[2] !== "none"; })
      .map(function (s) { return s[2] + " for " + s[1] + " " + step; });
    const label = svg.getAttribute("aria-label") || "";
    svg.setAttribute("aria-label", label.split(":")[0] + ": " + (words.length ? words.join(", then ") : "no runs yet"));
  }
  function drawSpark(svg, values) {
    if (!svg) return;
    const line = svg.querySelector("polyline");
    let top = 0;
    values.forEach(function (v) { if (v !== null && v > top) top = v; });
    if (top <= 0) top = 1;
    const points = [];
    values.forEach(function (v, i) {
      if (v !== null) points.push(i + "," + (19 - v * (18 / top)).toFixed(0));
    });
    const text = points.join(" ");
    if (line && line.getAttribute("points") !== text) line.setAttribute("points", text);
  }
  function componentList(components) {
    const list = document.createElement("ul");
    list.className = "components";
    components.forEach(function (c) {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "cname";
      name.textContent = c[0];
      const reported = document.createElement("span");
      reported.className = "reported";
      reported.textContent = "reports “" + c[2] + "”";
      item.append(newPill(c[1], " small"), " ", name, " ", reported);
      list.append(item);
    });
    return list;
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("logged out");
    }
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }

  // Polls at the page's interval while the tab is visible; a hidden tab costs the daemon nothing. Every
  // page polls at the same instants of the daemon's clock (multiples of the interval), so the daemon renders
  // once for all the pages open at a time (it shares one rendering for a second).
  function nextDelay() {
    const now = Date.now() + skew;
    return Math.max(200, poll - (now % poll)) + Math.random() * 150;
  }
  function every(task, now) {
    let timer = null;
    async function tick() {
      timer = null;
      if (document.hidden) return;
      try {
        await task();
      } catch (error) {
        if (String(error.message) !== "logged out") console.warn("prober page update failed:", error.message);
      }
      if (!document.hidden && timer === null) timer = setTimeout(tick, nextDelay());
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer === null) tick();
      if (document.hidden && timer !== null) { clearTimeout(timer); timer = null; }
    });
    timer = setTimeout(tick, now ? 0 : nextDelay());
  }

  // --- the list of targets ----------------------------------------------------------------------------
  function index() {
    const table = document.getElementById("targets");
    const tbody = table.tBodies[0];
    const form = document.querySelector("form.filters");
    const select = {
      state: document.getElementById("f-state"), kind: document.getElementById("f-kind"),
      group: document.getElementById("f-group"), sort: document.getElementById("f-sort"),
    };
    const shown = document.getElementById("shown");
    const rows = new Map();
    const data = new Map(); // name -> its latest JSON (for sorting)
    Array.from(tbody.rows).forEach(function (tr) {
      rows.set(tr.dataset.name, tr);
      data.set(tr.dataset.name, { state: tr.dataset.state, kind: tr.dataset.kind, critical: tr.dataset.critical === "true" });
    });
    let sparkMinute = -1;

    function keyOf(sort, name) {
      const d = data.get(name) || {};
      if (sort === "name") return [name];
      if (sort === "kind") return [d.kind || "", name];
      if (sort === "latency") return [-(d.latency_ms === null || d.latency_ms === undefined ? -1 : d.latency_ms), name];
      if (sort === "uptime") return [d.uptime_24h === null || d.uptime_24h === undefined ? 2 : d.uptime_24h, name];
      return [RANK[d.state] === undefined ? 2 : RANK[d.state], d.critical ? 0 : 1, name];
    }
    function compare(a, b) {
      for (let i = 0; i < a.length; i++) {
        if (a[i] < b[i]) return -1;
        if (a[i] > b[i]) return 1;
      }
      return 0;
    }
    function arrange() {
      const sort = select.sort.value;
      const names = Array.from(rows.keys());
      const keys = new Map(names.map(function (n) { return [n, keyOf(sort, n)]; }));
      names.sort(function (a, b) { return compare(keys.get(a), keys.get(b)); });
      const current = Array.from(tbody.rows).map(function (tr) { return tr.dataset.name; });
      if (current.join("\n") !== names.join("\n")) {
        const fragment = document.createDocumentFragment();
        names.forEach(function (n) { fragment.append(rows.get(n)); });
        tbody.append(fragment);
      }
      const state = select.state.value, kind = select.kind.value, group = select.group.value;
      let visible = 0;
      rows.forEach(function (tr) {
        const keep = (!state || tr.dataset.state === state) && (!kind || tr.dataset.kind === kind) &&
          (!group || tr.dataset.groups.split(" ").indexOf(group) >= 0);
        if (tr.hidden === keep) tr.hidden = !keep;
        if (keep) visible++;
      });
      const counts = {};
      rows.forEach(function (tr) { counts[tr.dataset.state] = (counts[tr.dataset.state] || 0) + 1; });
      const parts = ["unhealthy", "degraded", "unknown", "ok"].filter(function (s) { return counts[s]; })
        .map(function (s) { return counts[s] + " " + s; });
      setText(shown, visible + " of " + rows.size + " targets shown" + (parts.length ? " (" + parts.join(", ") + ")" : ""));
    }
    function remember() {
      const query = new URLSearchParams();
      ["state", "kind", "group"].forEach(function (k) { if (select[k].value) query.set(k, select[k].value); });
      if (select.sort.value !== "state") query.set("sort", select.sort.value);
      const text = query.toString();
      history.replaceState(null, "", text ? "/?" + text : "/");
    }
    form.addEventListener("submit", function (event) { event.preventDefault(); arrange(); remember(); });
    Object.values(select).forEach(function (s) {
      s.addEventListener("change", function () { arrange(); remember(); });
    });
    document.querySelectorAll(".groups a[data-group]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        select.group.value = link.dataset.group;
        arrange();
        remember();
      });
    });

    function update(tr, r, now) {
      if (tr.dataset.state !== r.state) tr.dataset.state = r.state;
      pill(tr.querySelector(".pill"), r.state);
      setText(tr.querySelector(".reason"), r.reason || "");
      setText(tr.querySelector(".message"), r.message);
      setText(tr.querySelector(".lat"), latency(r.latency_ms));
      const success = tr.querySelector(".success");
      success.dataset.at = r.last_success === null ? "" : String(r.last_success);
      setText(success, ago(r.last_success, now));
      setText(tr.querySelector(".up1"), percent(r.uptime_1h));
      setText(tr.querySelector(".up24"), percent(r.uptime_24h));
      setText(tr.querySelector(".cert"), cert(r.cert_days));
      drawTimeline(tr.querySelector("svg.timeline"), r.timeline);
      const said = JSON.stringify(r.components);
      if (tr.dataset.components !== said) {
        tr.dataset.components = said;
        const cell = tr.querySelector("th");
        let details = cell.querySelector("details");
        if (!r.components.length) {
          if (details) details.remove();
        } else {
          if (!details) {
            details = document.createElement("details");
            details.className = "comps";
            details.append(document.createElement("summary"));
            cell.append(details);
          }
          setText(details.querySelector("summary"), r.components.length + " component" + (r.components.length === 1 ? "" : "s"));
          const old = details.querySelector("ul");
          const list = componentList(r.components);
          if (old) old.replaceWith(list); else details.append(list);
        }
      }
    }

    function cell(className) {
      const td = document.createElement("td");
      if (className) td.className = className;
      return td;
    }
    function svg(className, box, label) {
      const element = document.createElementNS(SVG, "svg");
      element.setAttribute("class", className);
      element.setAttribute("viewBox", box);
      element.setAttribute("preserveAspectRatio", "none");
      element.setAttribute("role", "img");
      element.setAttribute("aria-label", label);
      return element;
    }
    // a row as templates/index.html writes it, for the targets the first render left out
    function buildRow(name, r, now) {
      const tr = document.createElement("tr");
      tr.id = "t-" + name;
      tr.dataset.name = name;
      tr.dataset.kind = r.kind;
      tr.dataset.groups = r.groups.join(" ");
      tr.dataset.critical = String(r.critical);
      const state = cell();
      state.append(newPill(r.state));
      const th = document.createElement("th");
      th.scope = "row";
      const link = document.createElement("a");
      link.href = "/target/" + encodeURIComponent(name);
      link.textContent = name;
      const crit = document.createElement("span");
      crit.className = "crit";
      crit.textContent = r.critical ? "critical" : "optional";
      th.append(link, " ", crit);
      const kind = cell();
      kind.textContent = r.kind;
      const message = cell("msg");
      const reason = document.createElement("b");
      reason.className = "reason";
      const text = document.createElement("span");
      text.className = "message";
      message.append(reason, " ", text);
      const success = cell();
      const time = document.createElement("time");
      time.className = "success";
      success.append(time);
      const graphs = cell("graphs");
      const timeline = svg("timeline", "0 0 60 10", "state over the last hour");
      timeline.dataset.step = "min";
      const spark = svg("spark", "0 0 59 20", "latency over the last hour");
      spark.append(document.createElementNS(SVG, "polyline"));
      graphs.append(timeline, spark);
      tr.append(state, th, kind, message, cell("num lat"), success, cell("num up1"), cell("num up24"), graphs, cell("cert"));
      update(tr, r, now);
      return tr;
    }

    async function refresh() {
      const minute = Math.floor(Date.now() / 60000);
      const spark = minute !== sparkMinute;
      const page = await getJSON("/api/page" + (spark ? "?spark=1" : ""));
      skew = page.now * 1000 - Date.now();
      const names = Object.keys(page.rows);
      // rows the first render left out (it sends the first FIRST_ROWS) or a reload added: built here, a few
      // hundred at a time so the page stays responsive; rows of targets a reload removed: dropped
      const missing = names.filter(function (n) { return !rows.has(n); });
      for (let i = 0; i < missing.length; i += 250) {
        const fragment = document.createDocumentFragment();
        missing.slice(i, i + 250).forEach(function (n) {
          const tr = buildRow(n, page.rows[n], page.now);
          tr.hidden = true; // arrange() shows it where it belongs
          rows.set(n, tr);
          fragment.append(tr);
        });
        tbody.append(fragment);
        if (i + 250 < missing.length) await new Promise(function (done) { setTimeout(done, 0); });
      }
      rows.forEach(function (tr, n) {
        if (!(n in page.rows)) { tr.remove(); rows.delete(n); data.delete(n); }
      });
      const more = document.getElementById("more");
      if (more) more.remove(); // every row is in the table now
      if (missing.length) performance.mark("prober:complete"); // bench/page.py reads it
      pill(document.querySelector(".overall .pill"), page.overall);
      document.title = page.overall + " · prober";
      document.querySelectorAll(".groups li").forEach(function (li) {
        const link = li.querySelector("a[data-group]");
        if (link && page.groups[link.dataset.group]) pill(li.querySelector(".pill"), page.groups[link.dataset.group]);
      });
      names.forEach(function (name) {
        const r = page.rows[name];
        data.set(name, r);
        update(rows.get(name), r, page.now);
        if (spark && page.spark) drawSpark(rows.get(name).querySelector("svg.spark"), page.spark[name]);
      });
      if (spark) sparkMinute = minute;
      const updated = document.getElementById("updated");
      updated.setAttribute("datetime", String(page.now));
      setText(updated, clock(page.now));
      arrange();
    }

    arrange();
    performance.mark("prober:ready"); // the rows are arranged and the controls work (bench/page.py reads it)
    every(refresh, true); // at once: the first update draws the sparklines
  }

  // --- one target ---------------------------------------------------------------------------------------
  function fill(tbody, rows, empty, columns) {
    const trs = rows.map(function (cells) {
      const tr = document.createElement("tr");
      cells.forEach(function (cell) {
        const td = document.createElement("td");
        if (cell && typeof cell === "object") {
          const code = document.createElement("code");
          code.textContent = cell.code;
          td.append(code);
        } else {
          td.textContent = cell;
        }
        tr.append(td);
      });
      return tr;
    });
    if (!trs.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = columns;
      td.textContent = empty;
      tr.append(td);
      trs.push(tr);
    }
    tbody.replaceChildren.apply(tbody, trs);
  }

  function target() {
    const name = body.dataset.name;
    async function refresh() {
      const detail = await getJSON("/api/history/" + encodeURIComponent(name));
      skew = detail.now * 1000 - Date.now();
      const c = detail.check;
      pill(document.querySelector("#d-state .pill"), c.state);
      document.title = name + ": " + c.state + " · prober";
      setText(document.getElementById("d-reason"), c.reason || "—");
      setText(document.getElementById("d-message"), c.message);
      setText(document.getElementById("d-latency"), latency(c.latency_ms));
      setText(document.getElementById("d-run"), clock(c.last_run));
      setText(document.getElementById("d-success"), clock(c.last_success) + " (" + ago(c.last_success, detail.now) + ")");
      setText(document.getElementById("d-up1"), percent(c.uptime_1h));
      setText(document.getElementById("d-up24"), percent(c.uptime_24h));
      setText(document.getElementById("d-cert"), cert(c.cert_days));
      drawTimeline(document.querySelector("#d-hour svg.timeline"), c.timeline);
      const letter = { ok: "o", unknown: "x", degraded: "d", unhealthy: "u" };
      drawTimeline(document.querySelector("#d-day svg.timeline"), detail.quarters.buckets.map(function (b) {
        return b && b.status ? letter[b.status] : "-";
      }).join(""));
      const mean = function (b) { return b && b.latency_ms.mean !== null ? b.latency_ms.mean : null; };
      drawSpark(document.querySelector("#d-hour svg.spark"), detail.minutes.buckets.map(mean));
      drawSpark(document.querySelector("#d-day svg.spark"), detail.quarters.buckets.map(mean));
      fill(document.querySelector("#d-transitions tbody"), detail.transitions.map(function (t) {
        return [clock(t.time), t.from + " → " + t.to, t.reason || "", t.message || ""];
      }), "No state change yet.", 4);
      fill(document.querySelector("#d-phases tbody"), Object.entries(c.phases_ms).map(function (p) {
        return [p[0], latency(p[1])];
      }), "No phases recorded.", 2);
      fill(document.querySelector("#d-observations tbody"), Object.entries(c.observations).map(function (o) {
        return [o[0], { code: JSON.stringify(o[1]) }];
      }), "No observations.", 2);
      const box = document.getElementById("d-components");
      const said = JSON.stringify(c.components);
      if (box.dataset.components !== said) {
        box.dataset.components = said;
        if (c.components.length) {
          box.replaceChildren(componentList(c.components));
        } else {
          const p = document.createElement("p");
          p.textContent = "This target reports no components.";
          box.replaceChildren(p);
        }
      }
    }
    every(refresh);
  }

  if (body.dataset.view === "index") index();
  if (body.dataset.view === "target") target();
})();
