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

function figures(s) {
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
