// Live view: one EventSource on /api/events; each update brings the events written since
// the last one (newest first) and the figures. The table keeps the latest 300.
"use strict";
const MAX = 300;
const ORDER = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"];
const rows = document.querySelector("#events tbody");
const facilities = document.querySelector("#facilities tbody");
const conn = document.getElementById("conn");
const fLevel = document.getElementById("f-level");
const fService = document.getElementById("f-service");
const fText = document.getElementById("f-text");

function cell(tr, cls, text) {
  const td = document.createElement("td");
  td.className = cls;
  td.textContent = text;
  tr.appendChild(td);
  return td;
}

function row(e) {
  const tr = document.createElement("tr");
  const level = (e.level || "-").toUpperCase();
  tr.className = "event level-" + level.toLowerCase();
  tr.dataset.level = level;
  tr.dataset.service = e.service || "";
  cell(tr, "time", e.time || "");
  cell(tr, "level", level);
  cell(tr, "service", e.service || "");
  cell(tr, "host", (e.host || "-") + "[" + (e.pid || "-") + "]");
  cell(tr, "logger", e.logger || "");
  const msg = cell(tr, "message", e.message || "");
  const fields = Object.entries(e.fields || {}).map(([k, v]) => k + "=" + v).join(" ");
  const extra = [fields, e.error ? "error=" + e.error : ""].filter(Boolean).join(" ");
  if (extra) {
    const span = document.createElement("span");
    span.className = "fields";
    span.textContent = " " + extra;
    msg.appendChild(span);
  }
  tr.dataset.text = tr.textContent.toLowerCase();
  return tr;
}

function visible(tr) {
  const min = fLevel.value;
  if (min && ORDER.indexOf(tr.dataset.level) >= 0 &&
      ORDER.indexOf(tr.dataset.level) < ORDER.indexOf(min)) return false;
  const svc = fService.value.trim();
  if (svc && tr.dataset.service !== svc) return false;
  const text = fText.value.trim().toLowerCase();
  return !text || tr.dataset.text.includes(text);
}

function refilter() {
  for (const tr of rows.children) tr.hidden = !visible(tr);
}
[fLevel, fService, fText].forEach((el) => el.addEventListener("input", refilter));

// The chart: one point a second, the newest at the right edge, scaled to the window's peak;
// a red bar for each second with errors. It keeps the numbers it drew as data-values.
const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 60;
function chart(r) {
  const n = Math.max(r.window_s / r.step_s, r.events.length, 1);
  const x = (i) => (n - r.events.length + i + 0.5) * W / n;
  const peak = Math.max(1, ...r.events);
  const line = document.getElementById("rates-events");
  line.setAttribute("points", r.events
    .map((v, i) => x(i).toFixed(1) + "," + (H - 1 - (H - 2) * v / peak).toFixed(1)).join(" "));
  line.dataset.values = r.events.join(",");
  line.dataset.step = r.step_s;
  const errors = document.getElementById("rates-errors");
  errors.replaceChildren(...r.errors.flatMap((v, i) => {
    if (!v) return [];
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("class", "error-bar");
    bar.setAttribute("x", (x(i) - 1).toFixed(1));
    bar.setAttribute("y", 0);
    bar.setAttribute("width", 2);
    bar.setAttribute("height", H);
    bar.setAttribute("fill", "rgb(200, 0, 0)");
    bar.dataset.errors = v;
    const title = document.createElementNS(SVG, "title");
    title.textContent = v + (v === 1 ? " error" : " errors");
    bar.appendChild(title);
    return [bar];
  }));
  document.getElementById("rates-peak").textContent = Math.max(0, ...r.events) / r.step_s;
  document.getElementById("rates-window").textContent = Math.round(r.window_s / 60) + " min";
}

function figures(s) {
  if (s.rates) chart(s.rates);
  document.getElementById("rate").textContent = Math.round(s.events_per_s);
  document.getElementById("total").textContent = s.events;
  document.getElementById("backlog").textContent = s.backlog === null ? "?" : s.backlog;
  document.getElementById("files").textContent = s.open_files;
  document.getElementById("errors").textContent = s.errors;
  facilities.replaceChildren(...s.facilities.map((f) => {
    const tr = document.createElement("tr");
    [f.name, f.file, f.events, f.bytes, f.rotations].forEach((v) => cell(tr, "", String(v)));
    return tr;
  }));
}

// A page opened as /?token=T (a status page that asks for a token) passes it on.
const token = new URLSearchParams(location.search).get("token");
const source = new EventSource("/api/events" + (token ? "?token=" + encodeURIComponent(token) : ""));
source.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn live"; });
source.addEventListener("error", () => { conn.textContent = "reconnecting…"; conn.className = "conn"; });
source.addEventListener("update", (msg) => {
  const data = JSON.parse(msg.data);
  // Newest first: insert the batch, oldest of it last, at the top.
  const batch = data.events.slice(0, MAX).map(row);
  batch.forEach((tr) => { tr.hidden = !visible(tr); });
  rows.prepend(...batch);
  while (rows.children.length > MAX) rows.lastElementChild.remove();
  figures(data.stats);
});
