// The timeline: reads the window with Query, then follows the change feed (Listen over the
// gateway's newline-delimited JSON) and redraws as changes come. State lives in the URL
// (view, start, resources) so that a view can be bookmarked.
"use strict";

const HOUR = 3600e3, DAY = 24 * HOUR;
const $ = (id) => document.getElementById(id);
const state = {
  view: "week", start: null, filter: "",
  reservations: new Map(), // id -> reservation, as the API spells it
  known: new Set(),        // every resource seen in a booking
  catalogue: new Map(),    // id -> resource, as ListResources last said
  listed: false,           // the catalogue has been read once
  seq: null,               // newest change applied
  assigned: null,          // the booking this page last made through a pool
  series: null,            // the series whose bars are outlined (one of it is open)
  token: sessionStorage.getItem("token") || "",
  user: localStorage.getItem("user") || "",
};

// ---- time ----
function startOfDay(t) { const d = new Date(t); d.setHours(0, 0, 0, 0); return d; }
function startOfWeek(t) { const d = startOfDay(t); d.setDate(d.getDate() - ((d.getDay() + 6) % 7)); return d; }
function span() { return state.view === "day" ? DAY : 7 * DAY; }
function windowEnd() { const d = new Date(state.start); d.setDate(d.getDate() + (state.view === "day" ? 1 : 7)); return d; }
// One formatter for all: making one per call costs more than drawing the bar.
const dateTime = new Intl.DateTimeFormat([], { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
function fmt(t) { return dateTime.format(new Date(t)); }
function localInput(t) { const d = new Date(t); d.setMinutes(d.getMinutes() - d.getTimezoneOffset()); return d.toISOString().slice(0, 16); }
// zoneText names the zone every time on the page is shown in (the browser's).
function zoneText() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const off = -new Date(state.start).getTimezoneOffset(), a = Math.abs(off);
  const utc = off === 0 ? "UTC" : `UTC${off > 0 ? "+" : "−"}${String(Math.floor(a / 60)).padStart(2, "0")}:${String(a % 60).padStart(2, "0")}`;
  return zone === "UTC" || zone === "Etc/UTC" ? "Times in UTC" : `Times in ${zone} (${utc})`;
}
function ymd(d) { return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`; }

// ---- URL ----
function readURL() {
  const p = new URLSearchParams(location.search);
  state.view = p.get("view") === "day" ? "day" : "week";
  const s = p.get("start") ? new Date(p.get("start") + "T00:00:00") : new Date();
  state.start = state.view === "day" ? startOfDay(s) : startOfWeek(s);
  state.filter = p.get("resources") || "";
  $("view").value = state.view;
  $("filter").value = state.filter;
}
function writeURL() {
  const p = new URLSearchParams({ view: state.view, start: ymd(state.start) });
  if (state.filter) p.set("resources", state.filter);
  history.replaceState(null, "", "?" + p);
}

// ---- API ----
async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const resp = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  if (resp.status === 401) { await signIn(); return api(method, path, body); }
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw apiError(data, resp.status);
  return data;
}
// Every error, unary or streamed, is {"error": google.rpc.Status}.
function apiError(data, httpStatus) {
  const st = (data && data.error) || data || {};
  const e = new Error(st.message || `HTTP ${httpStatus}`);
  e.code = st.code;
  e.details = st.details || [];
  return e;
}
// lines reads a newline-delimited JSON response, calling fn for each object.
async function lines(resp, fn) {
  const reader = resp.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) fn(JSON.parse(line));
    }
  }
}
// signIn asks for a token once, however many calls were refused meanwhile (the feed and the
// catalogue ask side by side).
let signingIn = null;
function signIn() {
  signingIn = signingIn || new Promise((resolve) => {
    const d = $("login");
    d.onclose = () => { state.token = $("login-token").value.trim(); sessionStorage.setItem("token", state.token); signingIn = null; resolve(); };
    d.showModal();
  });
  return signingIn;
}

// ---- words people understand ----
function explain(err) {
  for (const d of err.details || []) {
    const md = d.metadata || {};
    if (d.reason === "RESERVATION_CONFLICT") {
      const n = Number(md.conflict_count || 0), parts = [];
      for (let i = 0; i < n; i++) {
        const r = state.reservations.get(md[`conflict_${i}_id`]);
        parts.push(`${r ? r.user_id + "'s booking" : "booking " + md[`conflict_${i}_id`]} from ${fmt(md[`conflict_${i}_start`])} to ${fmt(md[`conflict_${i}_end`])}`);
      }
      const cap = capacityOf(err.resource);
      if (cap > 1) return `All ${cap} places are taken then: it overlaps ${parts.join(" and ")}.`;
      return `That time is already booked: it overlaps ${parts.join(" and ")}.`;
    }
    if (d.reason === "POOL_FULL") {
      return `No unit${err.pool ? " of " + err.pool : ""} is free for all of that time: every one is booked then, or disabled. Try another time, or a unit's own row.`;
    }
    if (d.reason === "RESOURCE_DISABLED") return `${err.resource || "This resource"} is disabled: it takes no new reservations.`;
    if ((d["@type"] || "").endsWith("BadRequest")) {
      return "Please check: " + (d.field_violations || d.fieldViolations || []).map((v) => `${v.field.replace(/^reservation\./, "")} ${v.description}`).join("; ") + ".";
    }
  }
  if (/version/.test(err.message)) return "Someone else changed this booking meanwhile: " + err.message + ". Look again and retry.";
  if (/expired/.test(err.message)) return "This hold has lapsed: " + err.message + ".";
  return err.message;
}
function say(text, kind) { const m = $("message"); m.textContent = text; m.hidden = !text; m.classList.toggle("info", kind === "info"); }

// ---- data ----
function put(r) {
  if (!r || !r.id) return;
  const old = state.reservations.get(r.id);
  if (old && Number(old.version) > Number(r.version)) return;
  state.reservations.set(r.id, r);
  state.known.add(r.resource_id);
  if (!state.catalogue.has(r.resource_id)) unknown(r.resource_id);
}

// ---- the catalogue ----
// listCatalogue reads every resource, page by page, and redraws. Calls while one runs make one
// more run after it: what it read may predate the change that asked.
let listing = null, listAgain = false;
function listCatalogue() {
  if (listing) { listAgain = true; return listing; }
  listing = (async () => {
    do {
      listAgain = false;
      const fresh = new Map();
      let token = "";
      do {
        const q = new URLSearchParams({ page_size: 100 });
        if (token) q.set("page_token", token);
        const out = await api("GET", "/v1/resources?" + q);
        for (const r of out.resources || []) fresh.set(r.id, r);
        token = out.next_page_token || "";
      } while (token);
      state.catalogue = fresh;
      state.listed = true;
      drawSoon();
    } while (listAgain);
  })().catch((e) => console.warn("catalogue:", e)).finally(() => { listing = null; });
  return listing;
}
// unknown re-lists the catalogue for a resource it has not heard of (a new one, or one that
// an open catalogue made on its first booking): once per resource, so that one missing from
// the catalogue does not list it again with every change. The timer catches the rest.
const asked = new Set();
function unknown(id) {
  if (!state.listed || asked.has(id)) return;
  asked.add(id);
  listCatalogue();
}
function capacityOf(id) { const r = state.catalogue.get(id); return Math.max(1, Number((r && r.capacity) || 1)); }
function poolOf(id) { const r = state.catalogue.get(id); return (r && r.pool_id) || ""; }
// units lists the pools of the catalogue, each with its units by id: the order the service
// tries them in.
function units() {
  const pools = new Map();
  for (const r of [...state.catalogue.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    if (!r.pool_id) continue;
    if (!pools.has(r.pool_id)) pools.set(r.pool_id, []);
    pools.get(r.pool_id).push(r.id);
  }
  return pools;
}
// load reads the window shown. What it read replaces what is known of that window, the one
// it asked about: a load that a quicker move overtook must not drop the bookings of the window
// shown now (nor may its answer, arriving last, be taken as that window's).
let loads = 0;
async function load() {
  const from = state.start, to = windowEnd(), mine = ++loads;
  const q = new URLSearchParams({ start: from.toISOString(), end: to.toISOString() });
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const resp = await fetch("/v1/reservations:query?" + q, { headers });
  if (resp.status === 401) { await signIn(); return load(); }
  if (!resp.ok) throw apiError(await resp.json().catch(() => ({})), resp.status);
  const fresh = new Map();
  await lines(resp, (m) => { if (m.result) fresh.set(m.result.id, m.result); if (m.error) throw apiError(m.error, 500); });
  if (mine === loads) {
    for (const [id, r] of state.reservations) if (!fresh.has(id) && new Date(r.start) < to && new Date(r.end) > from) state.reservations.delete(id);
  }
  fresh.forEach(put);
  drawSoon();
}
function overlapsWindow(r) { return new Date(r.start) < windowEnd() && new Date(r.end) > state.start; }

// follow tails the change feed for ever, resuming after the last seq it applied.
async function follow() {
  let backoff = 500;
  for (;;) {
    try {
      const q = state.seq === null ? "" : "?after_seq=" + state.seq;
      const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
      const resp = await fetch("/v1/changes" + q, { headers });
      if (resp.status === 401) { await signIn(); continue; }
      if (!resp.ok) {
        const e = apiError(await resp.json().catch(() => ({})), resp.status);
        if (e.code === 11) { state.seq = null; continue; } // OUT_OF_RANGE: start over from now
        throw e;
      }
      if (state.seq === null) {
        state.seq = Number(resp.headers.get("Grpc-Metadata-Reservation-After-Seq") || 0);
        await load(); // read the state once the stream has a position: nothing falls between
      }
      conn("live", "live");
      backoff = 500;
      await lines(resp, (m) => {
        if (m.error) throw new Error(m.error.message);
        const c = m.result;
        if (c.op === "RESERVATION_UPDATE_TYPE_DELETE") state.reservations.delete(c.reservation.id);
        else put(c.reservation);
        state.seq = Number(c.seq);
        drawSoon();
      });
    } catch (e) {
      console.warn("change feed:", e);
    }
    conn("down", "disconnected — reconnecting…");
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 10000);
  }
}
function conn(cls, text) { const c = $("conn"); c.className = "conn " + cls; c.textContent = text; }

// ---- drawing ----
let pending = false, dragging = false;
// drawSoon redraws once per frame at most, and not in the middle of a drag: a redraw replaces
// the rows, and the drag with them.
function drawSoon() {
  if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; if (dragging) drawSoon(); else draw(); }); }
}
// shown lists the rows to draw, in order: resources ({res}) and pools ({pool, units}), each
// pool where it is first named with its units under it. A list in the filter (a,b,c) keeps its
// order, shows names the catalogue lacks as today, and may name a pool for all its units. Else
// every resource of the catalogue and every one seen in a booking that the filter's substring
// matches (by id, pool or display name): those in no pool first, then each pool, all by id.
function shown() {
  const f = state.filter.trim(), pools = units();
  let ids;
  if (f.includes(",")) {
    ids = f.split(",").map((s) => s.trim()).filter(Boolean)
      .flatMap((n) => (!state.catalogue.has(n) && pools.has(n) ? pools.get(n) : [n]));
  } else {
    const needle = f.toLowerCase(), has = (s) => (s || "").toLowerCase().includes(needle);
    const key = (id) => [poolOf(id) ? 1 : 0, poolOf(id), id];
    const cmp = (a, b) => { const ka = key(a), kb = key(b); for (let i = 0; i < 3; i++) if (ka[i] !== kb[i]) return ka[i] < kb[i] ? -1 : 1; return 0; };
    ids = [...new Set([...state.catalogue.keys(), ...state.known])]
      .filter((id) => !f || has(id) || has(poolOf(id)) || has((state.catalogue.get(id) || {}).display_name)).sort(cmp);
  }
  const out = [], groups = new Map();
  for (const id of new Set(ids)) {
    const pool = poolOf(id);
    if (!pool) { out.push({ res: id }); continue; }
    if (!groups.has(pool)) { const g = { pool, units: [] }; groups.set(pool, g); out.push(g); }
    groups.get(pool).units.push(id);
  }
  return out;
}
function pct(t) { return ((new Date(t) - state.start) / span()) * 100; }
function draw() {
  const t0 = state.start;
  $("range").textContent = state.view === "day" ? t0.toLocaleDateString([], { dateStyle: "full" })
    : `${t0.toLocaleDateString([], { dateStyle: "medium" })} – ${new Date(windowEnd() - 1).toLocaleDateString([], { dateStyle: "medium" })}`;
  $("resource-list").replaceChildren(...[...new Set([...state.catalogue.keys(), ...state.known, ...units().keys()])].sort().map((r) => new Option(r)));
  $("zone").textContent = zoneText();
  const step = drawScale();
  const grid = `repeating-linear-gradient(90deg, var(--line) 0 1px, transparent 1px ${100 / (span() / step)}%)`;
  const now = Date.now(), rows = [];
  for (const item of shown()) {
    if (!item.pool) { rows.push(row(item.res, grid, now)); continue; }
    rows.push(poolRow(item.pool, grid, now));
    for (const u of item.units) rows.push(row(u, grid, now, item.pool));
  }
  $("rows").replaceChildren(...rows);
  $("empty").hidden = rows.length > 0;
  labelShortBars();
}
// drawScale writes the time labels with the smallest step at which none runs into the next
// (a narrow window gets fewer), and returns the step.
function drawScale() {
  const steps = state.view === "day" ? [HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 6 * HOUR, 12 * HOUR] : [DAY, 2 * DAY, 7 * DAY];
  const corner = document.createElement("div");
  corner.className = "corner";
  for (const step of steps) {
    const ticks = document.createElement("div");
    ticks.className = "ticks";
    for (let t = +state.start; t < +windowEnd(); t += step) {
      const tick = document.createElement("div");
      tick.className = "tick";
      tick.style.left = pct(t) + "%";
      tick.textContent = state.view === "day" ? new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
        : new Date(t).toLocaleDateString([], { weekday: "short", day: "numeric" });
      ticks.append(tick);
    }
    $("scale").replaceChildren(corner, ticks);
    const room = ticks.clientWidth * step / span();
    if (step === steps[steps.length - 1] || [...ticks.children].every((tk) => tk.scrollWidth + 4 <= room)) return step;
  }
}
// labelShortBars writes the text of a bar too short to show it beside the bar, on whichever
// side has room in the bar's own lane, or else under the bars, on a line of its own that the
// row grows to hold; never over another bar or label. A label lies on free time, so it lets a
// drag through. With no room at all, the bar's tooltip (and its details) still say it all. All
// reads come before all writes: one layout.
const LANE = 1.15; // rem, the height of a line of labels under the bars
const MAX_LANES = 3;
let measure = null;
function labelShortBars() {
  measure = measure || document.createElement("canvas").getContext("2d");
  const plans = [], grow = [];
  for (const track of document.querySelectorAll("#rows .track")) {
    const bars = [...track.querySelectorAll(".bar")];
    if (!bars.length) continue;
    const width = track.clientWidth, barLanes = Number(track.dataset.lanes || 1);
    const spans = bars.map((b) => ({ b, lane: Number(b.dataset.lane || 0), x0: b.offsetLeft, x1: b.offsetLeft + b.offsetWidth, short: b.scrollWidth > b.clientWidth + 1 }));
    // Lanes 0 … barLanes-1 are the bars' own lines; the lines of labels under them follow.
    const lanes = [];
    for (let i = 0; i < barLanes + MAX_LANES; i++) lanes.push(i < barLanes ? spans.filter((sp) => sp.lane === i).map((sp) => [sp.x0, sp.x1]) : []);
    measure.font = getComputedStyle(bars[0]).font;
    const free = (lane, a, z) => a >= 0 && z <= width && lanes[lane].every(([x0, x1]) => z + 2 <= x0 || a >= x1 + 2);
    let used = 0;
    for (const sp of spans.filter((sp) => sp.short)) {
      // The whole text, else who and the note, else who; beside the bar, else under the bars.
      placing: for (const text of [...new Set([sp.b.dataset.text, sp.b.dataset.short, sp.b.dataset.who])]) {
        const w = Math.ceil(measure.measureText(text).width) + 8;
        const tries = [[sp.lane, sp.x1 + 2], [sp.lane, sp.x0 - 2 - w]];
        for (let lane = barLanes; lane < barLanes + MAX_LANES; lane++) tries.push([lane, Math.max(0, Math.min(sp.x0, width - w))]);
        for (const [lane, at] of tries) {
          if (!free(lane, at, at + w)) continue;
          lanes[lane].push([at, at + w]);
          used = Math.max(used, lane - barLanes + 1);
          plans.push({ track, bar: sp.b, at, w, text, lane, under: lane >= barLanes ? lane - barLanes : -1, barLanes });
          break placing;
        }
      }
    }
    if (used) grow.push({ track, used });
  }
  for (const { track, used } of grow) track.style.minHeight = `${Number(track.dataset.height) + used * LANE}rem`;
  for (const { track, bar, at, w, text, lane, under, barLanes } of plans) {
    const label = document.createElement("span");
    label.className = "bar-label" + (under >= 0 ? " under" : "");
    label.dataset.for = bar.dataset.id;
    label.textContent = text;
    label.style.left = at + "px";
    label.style.width = w + "px";
    label.style.top = under >= 0 ? `${BAR_TOP - 0.2 + barLanes * PITCH + under * LANE}rem` : bar.style.top;
    if (under < 0 && lane > 0) label.style.height = bar.style.height;
    label.setAttribute("aria-hidden", "true"); // the bar's own label says it to a screen reader
    bar.classList.add("labelled-outside");
    track.append(label);
  }
}
// Bars stack in lanes when bookings overlap (a resource with capacity): PITCH rem apart, and
// past MAX_BAR_LANES lanes thinner, without text, so that a row stays a row.
const BAR_TOP = 0.3, PITCH = 2.1, MAX_BAR_LANES = 6;

// live lists the reservations of res that the window shows: lapsed holds block nothing.
function live(res, now) {
  const out = [];
  for (const r of state.reservations.values()) {
    if (r.resource_id !== res || !overlapsWindow(r)) continue;
    if (r.expires_at && new Date(r.expires_at) <= now) continue;
    out.push(r);
  }
  return out.sort((a, b) => new Date(a.start) - new Date(b.start) || new Date(a.end) - new Date(b.end) || (a.id < b.id ? -1 : 1));
}
// lanesOf gives each reservation (sorted by start) the first lane free at its start.
function lanesOf(list) {
  const ends = [], lane = new Map();
  for (const r of list) {
    const s = +new Date(r.start);
    let i = ends.findIndex((e) => e <= s);
    if (i < 0) i = ends.push(0) - 1;
    ends[i] = +new Date(r.end);
    lane.set(r.id, i);
  }
  return { lane, count: Math.max(1, ends.length) };
}
// busy sweeps list over the window: the peak of reservations at once (not the number of rows
// that overlap: three bookings in a row never hold two places), and the spans in which at
// least cap are taken.
function busy(list, cap) {
  const w0 = +state.start, w1 = +windowEnd(), ev = [];
  for (const r of list) {
    const a = Math.max(w0, +new Date(r.start)), z = Math.min(w1, +new Date(r.end));
    if (a < z) ev.push([a, 1], [z, -1]);
  }
  ev.sort((x, y) => x[0] - y[0] || x[1] - y[1]); // an end before a start at the same instant
  let n = 0, peak = 0, from = null;
  const full = [];
  for (const [t, d] of ev) {
    n += d;
    peak = Math.max(peak, n);
    if (n >= cap && from === null) from = t;
    if (n < cap && from !== null) { if (t > from) full.push([from, t]); from = null; }
  }
  return { peak, full };
}
// takenAt counts the reservations of list that hold a place at instant t.
function takenAt(list, t) { return list.filter((r) => +new Date(r.start) <= t && t < +new Date(r.end)).length; }
// intersect keeps the time in both lists of sorted, disjoint spans.
function intersect(a, b) {
  const out = [];
  for (let i = 0, j = 0; i < a.length && j < b.length;) {
    const s = Math.max(a[i][0], b[j][0]), e = Math.min(a[i][1], b[j][1]);
    if (s < e) out.push([s, e]);
    if (a[i][1] < b[j][1]) i++; else j++;
  }
  return out;
}
function labelCell(name, id, meta, add) {
  const label = document.createElement("div");
  label.className = "label";
  const text = document.createElement("div");
  text.className = "text";
  const n = document.createElement("span");
  n.className = "name";
  n.textContent = name;
  n.title = id;
  text.append(n);
  for (const m of meta) {
    const el = document.createElement("small");
    el.className = "meta" + (m.cls ? " " + m.cls : "");
    el.textContent = m.text;
    if (m.title) el.title = m.title;
    text.append(el);
  }
  label.append(text, add);
  return label;
}
function addButton(what, open, disabled) {
  const add = document.createElement("button");
  add.type = "button";
  add.textContent = "+";
  add.setAttribute("aria-label", "New reservation of " + what);
  add.disabled = !!disabled;
  if (disabled) add.title = what + " is disabled: it takes no new reservations";
  add.onclick = () => { const s = new Date(Math.max(Date.now(), +state.start)); s.setMinutes(0, 0, 0); s.setHours(s.getHours() + 1); open(s, new Date(+s + HOUR)); };
  return add;
}
function nowLine(track, now) {
  if (now < +state.start || now >= +windowEnd()) return;
  const line = document.createElement("div");
  line.className = "now";
  line.style.left = pct(now) + "%";
  track.append(line);
}
// row draws a resource: its name (and capacity, and the most places taken at once in the
// period shown), its bookings in lanes, and a drag to book it. A disabled one is dimmed, and
// takes no new bookings.
function row(res, grid, now, pool) {
  const r = state.catalogue.get(res), cap = capacityOf(res), disabled = !!(r && r.disabled);
  const name = (r && r.display_name) || res;
  const el = document.createElement("div");
  el.className = "row" + (pool ? " unit" : "") + (disabled ? " disabled" : "");
  el.dataset.resource = res;
  el.dataset.name = name;
  if (pool) el.dataset.pool = pool;
  const list = live(res, now), { lane, count } = lanesOf(list), meta = [];
  if (name !== res) meta.push({ text: res });
  if (cap > 1) {
    const { peak } = busy(list, cap);
    meta.push({ text: `${cap} places`, cls: "capacity" });
    meta.push({ text: `${peak}/${cap} taken at peak`, cls: "taken" + (peak >= cap ? " full" : ""),
      title: `At most ${peak} of its ${cap} places are taken at once in the period shown` });
  }
  if (disabled) meta.push({ text: "disabled", cls: "off", title: "Takes no new reservations; those it has stay" });
  const track = document.createElement("div");
  track.className = "track";
  track.style.setProperty("--grid", grid);
  const thin = count > MAX_BAR_LANES, pitch = thin ? (MAX_BAR_LANES * PITCH) / count : PITCH;
  const height = BAR_TOP + 0.1 + count * pitch;
  track.dataset.lanes = count;
  track.dataset.height = height;
  if (count > 1) track.style.minHeight = height + "rem";
  for (const x of list) {
    const b = bar(x, now);
    b.dataset.lane = lane.get(x.id);
    b.style.top = `${BAR_TOP + lane.get(x.id) * pitch}rem`;
    if (thin) { b.style.height = `${pitch - 0.15}rem`; b.classList.add("thin"); b.textContent = ""; }
    track.append(b);
  }
  nowLine(track, now);
  if (cap > 1) hoverCount(track, (t) => `${takenAt(list, t)}/${cap} taken at ${fmt(t)}`);
  dragToReserve(track, { res, disabled });
  el.append(labelCell(name, res, meta, addButton(res, (a, b) => openNew({ res }, a, b), disabled)), track);
  return el;
}
// poolRow draws a pool's header: its name and units, hatched where no unit is free, and a
// drag to book whichever unit is free (the service picks it).
function poolRow(pool, grid, now) {
  const all = units().get(pool) || [], on = all.filter((id) => !state.catalogue.get(id).disabled);
  const el = document.createElement("div");
  el.className = "row pool-row";
  el.dataset.pool = pool;
  el.dataset.name = pool;
  const meta = [{ text: `${all.length} unit${all.length === 1 ? "" : "s"}${on.length < all.length ? `, ${all.length - on.length} disabled` : ""}`, cls: "units" }];
  const track = document.createElement("div");
  track.className = "track";
  track.style.setProperty("--grid", grid);
  const lists = on.map((id) => [id, live(id, now)]);
  let full = [[+state.start, +windowEnd()]];
  for (const [id, list] of lists) full = intersect(full, busy(list, capacityOf(id)).full);
  for (const [a, z] of full) {
    const f = document.createElement("div");
    f.className = "full";
    f.style.left = pct(a) + "%";
    f.style.width = (pct(z) - pct(a)) + "%";
    f.title = `${pool} is full from ${fmt(a)} to ${fmt(z)}: every unit is booked`;
    track.append(f);
  }
  nowLine(track, now);
  hoverCount(track, (t) => `${lists.filter(([id, list]) => takenAt(list, t) < capacityOf(id)).length} of ${all.length} units free at ${fmt(t)}`);
  dragToReserve(track, { pool });
  el.append(labelCell(pool, pool, meta, addButton("any free unit of " + pool, (a, b) => openNew({ pool }, a, b))), track);
  return el;
}
// hoverCount keeps the track's tooltip on what is taken at the instant under the pointer.
function hoverCount(track, text) {
  track.addEventListener("pointermove", (e) => {
    if (dragging) return;
    const box = track.getBoundingClientRect();
    track.title = text(+state.start + ((e.clientX - box.left) / box.width) * span());
  });
}
function bar(r, now) {
  const b = document.createElement("button");
  b.type = "button";
  const status = (r.status || "RESERVATION_STATUS_PENDING").replace("RESERVATION_STATUS_", "");
  b.className = "bar " + status + (r.expires_at ? " hold" : "") + (r.id === state.assigned ? " assigned" : "");
  b.dataset.id = r.id;
  const left = Math.max(0, pct(r.start)), right = Math.min(100, pct(r.end));
  b.style.left = left + "%";
  b.style.width = (right - left) + "%";
  let text = `${r.user_id}${r.note ? " · " + r.note : ""}`;
  b.dataset.who = r.user_id;
  b.dataset.short = text;
  if (r.expires_at) text += ` · hold, ${Math.max(0, Math.ceil((new Date(r.expires_at) - now) / 60000))} min left`;
  b.textContent = text;
  b.dataset.text = text;
  let of = "";
  if (r.series_id) {
    // One of a series: marked, and all of it outlined while one of it is open.
    b.classList.add("series");
    if (r.series_id === state.series) b.classList.add("series-selected");
    b.dataset.series = r.series_id;
    of = ", one of a series";
  }
  b.title = `${status.toLowerCase()} · ${fmt(r.start)} – ${fmt(r.end)} · ${text}${of ? " · one of a series" : ""}`;
  b.setAttribute("aria-label", `${r.resource_id}, ${status.toLowerCase()}, ${fmt(r.start)} to ${fmt(r.end)}, ${text}${of}`);
  b.onclick = (e) => { e.stopPropagation(); if (!clickAfterDrag) openDetails(r.id); };
  dragToMove(b, r);
  return b;
}

// ---- acting ----
// dragToMove lets bar b, of reservation r, be dragged to another time (in the quarter hours a
// drag to reserve snaps to: the booking keeps its length) and onto another resource's row. On
// release the page asks the service to move it (Update with a mask): the answer is drawn; a
// refusal is explained as a refused reservation is, and the bar stays where it was. A press and
// release that moves less than MOVE_SLOP px is a click, which opens the details. From the press
// on, the live feed redraws nothing: a redraw would replace the bar under the pointer, and the
// click or drag with it.
const SNAP = 15 * 60e3, MOVE_SLOP = 5;
let clickAfterDrag = false, moving = false;
function dragToMove(b, r) {
  let from = null, ghost = null, to = null;
  const done = () => { if (ghost) ghost.remove(); ghost = null; b.classList.remove("dragged"); };
  const release = () => { from = null; done(); dragging = false; drawSoon(); };
  b.onpointerdown = (e) => {
    e.stopPropagation(); // not a drag to reserve on the track under the bar
    if (e.button !== 0 || moving || dragging) return;
    from = { x: e.clientX, y: e.clientY, pointer: e.pointerId, res: r.resource_id };
    dragging = true;
    b.setPointerCapture(e.pointerId); // the release comes here, wherever it happens
  };
  b.onpointermove = (e) => {
    if (!from || e.pointerId !== from.pointer) return;
    if (!ghost) {
      if (Math.hypot(e.clientX - from.x, e.clientY - from.y) < MOVE_SLOP) return;
      b.classList.add("dragged");
      ghost = document.createElement("div");
      // Not a .bar: what counts the bars counts the bookings.
      ghost.className = "ghost " + [...b.classList].filter((c) => ["PENDING", "CONFIRMED", "BLOCKED", "hold", "series"].includes(c)).join(" ");
      ghost.textContent = b.dataset.short;
      ghost.setAttribute("aria-hidden", "true");
    }
    to = dropAt(b, r, e, from);
    const track = document.querySelector(`.row[data-resource="${CSS.escape(to.res)}"] .track`) || b.parentElement;
    ghost.style.left = Math.max(0, pct(to.start)) + "%";
    ghost.style.width = (Math.min(100, pct(to.end)) - Math.max(0, pct(to.start))) + "%";
    ghost.style.top = track === b.parentElement ? b.style.top : BAR_TOP + "rem";
    ghost.style.height = b.style.height;
    ghost.title = `${to.res}, ${fmt(to.start)} – ${fmt(to.end)}`;
    if (ghost.parentElement !== track) track.append(ghost);
  };
  b.onpointerup = (e) => {
    if (!from || e.pointerId !== from.pointer) return;
    if (!ghost) { release(); return; } // a click: onclick opens the details
    // The click that follows this release is the drag's, not a click on the bar.
    clickAfterDrag = true;
    setTimeout(() => { clickAfterDrag = false; }, 0);
    const dest = to;
    from = null;
    if (+dest.start === +new Date(r.start) && dest.res === r.resource_id) { release(); return; }
    moveTo(r, dest, ghost, () => { done(); dragging = false; draw(); });
  };
  // Pressed, and then taken away (a touch turned into a scroll, the window lost): as if never.
  b.onpointercancel = b.onlostpointercapture = () => { if (from) release(); };
}
// dropAt is where a drag of r's bar that started at from.x is now: the window moved by the
// pointer's travel in whole quarter hours, on the resource row under the pointer (the last one
// it crossed when it is over none, or over a pool's header).
function dropAt(b, r, e, from) {
  const width = b.parentElement.getBoundingClientRect().width;
  const delta = Math.round(((e.clientX - from.x) / width) * span() / SNAP) * SNAP;
  const under = document.elementFromPoint(e.clientX, e.clientY), row = under && under.closest(".row[data-resource]");
  if (row) from.res = row.dataset.resource;
  return { start: new Date(+new Date(r.start) + delta), end: new Date(+new Date(r.end) + delta), res: from.res };
}
// moveBooking asks the service to move r to dest ({start, end, res}): Update with a mask.
async function moveBooking(r, dest) {
  const out = await api("PATCH", `/v1/reservations/${r.id}`, {
    start: dest.start.toISOString(), end: dest.end.toISOString(), resource_id: dest.res,
    update_mask: "start,end,resourceId", // a FieldMask in JSON: lowerCamel paths, comma-separated
    expected_version: r.version,
  });
  put(out.reservation);
  return out.reservation;
}
function movedTo(r, dest) { return `${dest.res === r.resource_id ? "" : dest.res + ", "}${fmt(dest.start)} – ${fmt(dest.end)}`; }
// moveTo moves r to dest after a drag, the ghost of the bar showing where meanwhile; done
// removes the ghost.
async function moveTo(r, dest, ghost, done) {
  moving = true;
  ghost.classList.add("saving");
  const where = movedTo(r, dest);
  try {
    await moveBooking(r, dest);
    say(`Moved ${r.user_id}'s booking to ${where}.`, "info");
  } catch (e) {
    e.resource = dest.res;
    say(`${r.user_id}'s booking was not moved to ${where}: ${explain(e)}`);
  } finally {
    moving = false;
    done(); // the bar is drawn where the booking now is: moved, or where it was
  }
}
// dragToReserve opens the new-reservation dialog for the time dragged across on a track:
// target is {res} or {pool}. A disabled resource says so instead.
function dragToReserve(track, target) {
  let from = null, sel = null;
  const at = (e) => {
    const box = track.getBoundingClientRect();
    const t = +state.start + ((e.clientX - box.left) / box.width) * span();
    const snap = 15 * 60e3;
    return new Date(Math.round(t / snap) * snap);
  };
  track.onpointerdown = (e) => {
    if (e.button !== 0) return;
    if (target.disabled) { say(`${target.res} is disabled: it takes no new reservations.`); return; }
    from = at(e);
    dragging = true;
    track.setPointerCapture(e.pointerId);
    sel = document.createElement("div");
    sel.className = "selection";
    track.append(sel);
  };
  track.onpointermove = (e) => {
    if (!from) return;
    const to = at(e), a = Math.min(from, to), b = Math.max(from, to);
    sel.style.left = pct(a) + "%";
    sel.style.width = (pct(b) - pct(a)) + "%";
  };
  track.onpointercancel = () => { from = null; dragging = false; if (sel) sel.remove(); };
  track.onpointerup = (e) => {
    if (!from) return;
    const to = at(e), a = new Date(Math.min(from, to)), b = new Date(Math.max(from, to));
    from = null;
    dragging = false;
    sel.remove();
    if (b - a >= 15 * 60e3) openNew(target, a, b);
  };
}
// openNew asks for the user and note of a booking of target ({res}, or {pool}: any free unit
// of it).
function openNew(target, start, end) {
  const n = target.pool ? (units().get(target.pool) || []).length : 0;
  $("new-what").textContent = target.pool ? `Any free unit of ${target.pool} (${n} unit${n === 1 ? "" : "s"}): the first free one is assigned.` : target.res;
  $("new").dataset.resource = target.res || "";
  $("new").dataset.pool = target.pool || "";
  $("new-start").value = localInput(start);
  $("new-end").value = localInput(end);
  $("new-user").value = state.user;
  $("new-note").value = "";
  showErrors("new", null);
  $("new").showModal();
  $("new-user").focus();
}
async function submitNew() {
  const res = $("new").dataset.resource, pool = $("new").dataset.pool;
  const body = { reservation: {
    user_id: $("new-user").value.trim(), note: $("new-note").value,
    start: new Date($("new-start").value).toISOString(), end: new Date($("new-end").value).toISOString(),
  }, request_id: crypto.randomUUID() };
  if (pool) body.reservation.pool_id = pool; else body.reservation.resource_id = res;
  state.user = body.reservation.user_id;
  localStorage.setItem("user", state.user);
  showErrors("new", null);
  $("new-submit").disabled = true;
  try {
    const out = await api("POST", "/v1/reservations", body), r = out.reservation;
    put(r);
    $("new").close();
    if (pool) {
      state.assigned = r.id;
      say(`${r.resource_id} was assigned from ${pool}: ${r.user_id}'s booking from ${fmt(r.start)} to ${fmt(r.end)}.`, "info");
    } else say("");
    draw();
  } catch (e) {
    e.pool = pool;
    e.resource = res;
    showErrors("new", e); // the dialog stays open with what was typed
  } finally {
    $("new-submit").disabled = false;
  }
}
// find asks SearchAvailability which resources the selector picks (every one, when it is
// empty) are free from find-start to find-end, and lists them; each opens the new-booking
// dialog for that window. An offer is as of the call: the booking may still be refused.
async function find() {
  const err = $("find-error"), list = $("find-results");
  err.hidden = true;
  list.replaceChildren();
  const start = new Date($("find-start").value), end = new Date($("find-end").value);
  const q = new URLSearchParams({ selector: $("find-selector").value.trim() || "!no-such-label", page_size: 20 });
  if (!isNaN(start)) q.set("start", start.toISOString());
  if (!isNaN(end)) q.set("end", end.toISOString());
  try {
    const out = await api("GET", "/v1/availability:search?" + q);
    const offers = out.offers || [];
    for (const o of offers) {
      const li = document.createElement("li"), b = document.createElement("button");
      b.type = "button";
      b.className = "offer";
      b.dataset.resource = o.resource_id;
      const places = Number(o.available || 1);
      b.textContent = `${o.resource_id}${o.pool_id ? " (" + o.pool_id + ")" : ""}${places > 1 ? ", " + places + " places" : ""}`;
      b.onclick = () => openNew({ res: o.resource_id }, o.start, o.end);
      li.append(b);
      list.append(li);
    }
    if (!offers.length) list.append(Object.assign(document.createElement("li"), { textContent: "Nothing is free for all of that time." }));
    else if (out.next_page_token) list.append(Object.assign(document.createElement("li"), { textContent: "…and more: narrow the selector." }));
    list.hidden = false;
  } catch (e) {
    err.textContent = explain(e);
    err.hidden = false;
  }
}

// showErrors writes err beside the field it is about, in the dialog named prefix: a
// BadRequest's fields each beside its own input, a conflict beside the times, the rest under
// the form. null clears them.
const FIELD_SLOT = { user_id: "user", start: "when", end: "when", note: "note", resource_id: "resource" };
function showErrors(prefix, err) {
  for (const el of document.querySelectorAll(`#${prefix} .field-error`)) { el.hidden = true; el.textContent = ""; }
  for (const el of document.querySelectorAll(`#${prefix} [aria-invalid]`)) el.removeAttribute("aria-invalid");
  if (!err) return;
  const add = (slot, text) => {
    const el = $(`${prefix}-${slot}-error`) || $(`${prefix}-error`);
    el.textContent = el.textContent ? el.textContent + " " + text : text;
    el.hidden = false;
    for (const input of document.querySelectorAll(`#${prefix} [aria-describedby="${el.id}"]`)) input.setAttribute("aria-invalid", "true");
  };
  let placed = false;
  for (const d of err.details || []) {
    if (["RESERVATION_CONFLICT", "POOL_FULL"].includes(d.reason)) { add("when", explain(err)); placed = true; }
    for (const v of d.field_violations || d.fieldViolations || []) {
      const field = v.field.replace(/^reservation\./, "");
      add(FIELD_SLOT[field] || "", `${field.replace("_id", "")} ${v.description}.`);
      placed = true;
    }
  }
  if (!placed) add("", explain(err));
}
function openDetails(id) {
  const r = state.reservations.get(id);
  if (!r) return;
  const dl = $("details-list");
  dl.replaceChildren();
  const status = (r.status || "").replace("RESERVATION_STATUS_", "");
  for (const [k, v] of [["Id", r.id], ["Resource", r.resource_id], ["User", r.user_id], ["Status", status],
    ["From", fmt(r.start)], ["To", fmt(r.end)], ["Hold until", r.expires_at ? fmt(r.expires_at) : "—"], ["Version", r.version],
    ...(r.series_id ? [["Series", seriesText(r)]] : [])]) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k; dd.textContent = v;
    dl.append(dt, dd);
  }
  $("details-note").value = r.note || "";
  $("details-start").value = localInput(r.start);
  $("details-end").value = localInput(r.end);
  $("details-resource").value = r.resource_id;
  $("details-confirm").hidden = status !== "PENDING";
  $("details").dataset.id = id;
  showErrors("details", null);
  selectSeries(r.series_id || null);
  $("details").showModal();
}
// seriesOf lists the bookings of series sid that the page knows, by start.
function seriesOf(sid) { return [...state.reservations.values()].filter((x) => x.series_id === sid).sort((a, b) => new Date(a.start) - new Date(b.start)); }
// seriesText says which of its series r is, among those the page has read (those of the
// period shown, and of the periods seen before).
function seriesText(r) {
  const all = seriesOf(r.series_id), i = all.findIndex((x) => x.id === r.id), later = all.length - i - 1;
  return `${i + 1} of the ${all.length} bookings of this series shown (outlined)${later ? `; ${later} after this one` : ""} · ${r.series_id}`;
}
// selectSeries outlines every bar of series sid (null: none), now and in later redraws.
function selectSeries(sid) {
  state.series = sid;
  for (const b of document.querySelectorAll(".bar.series")) b.classList.toggle("series-selected", !!sid && b.dataset.series === sid);
}
async function act(fn) {
  const r = state.reservations.get($("details").dataset.id);
  try {
    const out = await fn(r);
    if (out && out.reservation) put(out.reservation);
    $("details").close();
    say("");
    draw();
  } catch (e) { showErrors("details", e); }
}
// askCancel confirms a cancel, with an optional reason, which the service keeps in the
// booking's history. A booking of a series may be cancelled alone (the default) or with the
// series' following ones.
function askCancel() {
  const r = state.reservations.get($("details").dataset.id);
  if (!r) return;
  $("cancel-what").textContent = `${r.resource_id}, ${r.user_id}: ${fmt(r.start)} – ${fmt(r.end)}${r.note ? " · " + r.note : ""}${r.series_id ? " · one of a series" : ""}`;
  $("cancel-reason").value = "";
  $("cancel-scope").hidden = !r.series_id;
  $("cancel-only").checked = true;
  scopeChanged();
  $("cancel").dataset.id = r.id;
  showErrors("cancel", null);
  $("cancel").showModal();
  $("cancel-keep").focus(); // the safe choice is the default one
}
// scopeChanged names what the confirm button cancels: one booking, or the series from it on.
function scopeChanged() { $("cancel-confirm").textContent = $("cancel-following").checked ? "Cancel this and the following" : "Cancel reservation"; }
async function doCancel() {
  const r = state.reservations.get($("cancel").dataset.id);
  const reason = $("cancel-reason").value.trim(), following = !!r.series_id && $("cancel-following").checked;
  const why = reason ? ". Reason: " + reason : "";
  $("cancel-confirm").disabled = true;
  try {
    if (following) {
      const body = { from: r.start };
      if (reason) body.reason = reason;
      const out = await api("POST", `/v1/series/${encodeURIComponent(r.series_id)}:cancel`, body), gone = out.reservations || [];
      for (const x of gone) state.reservations.delete(x.id);
      say(`Cancelled ${gone.length} booking${gone.length === 1 ? "" : "s"} of ${r.user_id}'s series, from ${fmt(r.start)} on${why}.`, "info");
    } else {
      const q = new URLSearchParams({ expected_version: r.version });
      if (reason) q.set("reason", reason);
      await api("DELETE", `/v1/reservations/${r.id}?${q}`);
      state.reservations.delete(r.id);
      say(`Cancelled ${r.user_id}'s booking of ${r.resource_id}, ${fmt(r.start)} – ${fmt(r.end)}${why}.`, "info");
    }
    $("cancel").close();
    $("details").close();
    draw();
  } catch (e) {
    showErrors("cancel", e);
  } finally {
    $("cancel-confirm").disabled = false;
  }
}

// ---- wiring ----
function move(dir) {
  const d = new Date(state.start);
  d.setDate(d.getDate() + dir * (state.view === "day" ? 1 : 7));
  state.start = d;
  changed();
}
function changed() { writeURL(); draw(); load().catch((e) => say(explain(e))); }
$("prev").onclick = () => move(-1);
$("next").onclick = () => move(1);
$("today").onclick = () => { state.start = state.view === "day" ? startOfDay(new Date()) : startOfWeek(new Date()); changed(); };
$("view").onchange = () => { state.view = $("view").value; state.start = state.view === "day" ? startOfDay(state.start) : startOfWeek(state.start); changed(); };
$("filter").oninput = () => { state.filter = $("filter").value; writeURL(); draw(); };
$("find").onsubmit = (e) => { e.preventDefault(); find(); };
$("new-form").onsubmit = (e) => { if (e.submitter && e.submitter.value === "default") { e.preventDefault(); submitNew(); } };
$("cancel-form").onsubmit = (e) => { if (e.submitter && e.submitter.value === "default") { e.preventDefault(); doCancel(); } };
$("details-confirm").onclick = () => act((r) => api("POST", `/v1/reservations/${r.id}:confirm`, { expected_version: r.version }));
$("details-save").onclick = () => act((r) => api("PATCH", `/v1/reservations/${r.id}`, { note: $("details-note").value, expected_version: r.version }));
$("details-cancel").onclick = askCancel;
$("cancel-only").onchange = $("cancel-following").onchange = scopeChanged;
// The details' Move: the keyboard's (and any pointer's) way to do what a drag does.
$("details-move").onclick = async () => {
  const r = state.reservations.get($("details").dataset.id);
  if (!r) return;
  const dest = { start: new Date($("details-start").value), end: new Date($("details-end").value), res: $("details-resource").value.trim() };
  showErrors("details", null);
  if (isNaN(dest.start) || isNaN(dest.end)) { showErrors("details", { message: "Please give the start and the end, date and time.", details: [] }); return; }
  $("details-move").disabled = true;
  try {
    await moveBooking(r, dest);
    $("details").close();
    say(`Moved ${r.user_id}'s booking to ${movedTo(r, dest)}.`, "info");
    draw();
  } catch (e) {
    e.resource = dest.res;
    showErrors("details", e); // beside the times or the resource; the dialog stays open
  } finally {
    $("details-move").disabled = false;
  }
};
$("details").addEventListener("close", () => selectSeries(null));
window.addEventListener("resize", drawSoon); // the scale's step and the outside labels follow the width
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, textarea, select, dialog")) return;
  if (e.key === "ArrowLeft") move(-1);
  if (e.key === "ArrowRight") move(1);
});
setInterval(drawSoon, 30e3); // the now line and the holds' time left
// The feed carries reservations, not resources: new resources (and changed ones) are learnt
// by listing the catalogue again now and then, and at once when a booking names one unknown.
setInterval(listCatalogue, 30e3);

readURL();
// The find box starts on a night in the shown week: its second day's 15:00 to the third's 11:00.
$("find-start").value = localInput(new Date(state.start.getTime() + DAY + 15 * HOUR));
$("find-end").value = localInput(new Date(state.start.getTime() + 2 * DAY + 11 * HOUR));
draw();
listCatalogue();
follow();
