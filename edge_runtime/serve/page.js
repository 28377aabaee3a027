// The serve page's script (edge_runtime/serve/page.html), served as /page.js. Data from the server or the
// user (file names, labels, decision names, errors) only ever reaches the page as text: DOM nodes built with
// createElement + textContent, never HTML strings; the page's CSP forbids inline script besides.
"use strict";
const $ = (id) => document.getElementById(id);
const OVERLAY_PREFIX = "data:image/png;base64,";
let info = null;

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}
function headers() {
  const t = $("token").value || sessionStorage.getItem("fe-token") || "";
  return t ? { "Authorization": "Bearer " + t } : {};
}
async function loadInfo() {
  const r = await fetch("/v1/info", { headers: headers() });
  if (r.status === 401) { $("tokenrow").hidden = false; $("model").textContent = "token required"; return; }
  if (!r.ok) { $("model").textContent = `model info unavailable (${r.status})`; return; }
  info = await r.json();
  $("model").textContent = `${info.model || "model"} · ${info.format} (${info.file}, ${info.runtime}) · ` +
    `input ${info.input_size} px · sha256 ${(info.sha256 || "unrecorded").slice(0, 12)} · ${info.integrity}` +
    (info.synthetic ? " · SYNTHETIC demo model" : "");
  $("disclaimer").textContent = info.disclaimer;
}
function decisionRow(name, d, positive) {
  const row = el("tr");
  row.append(el("td", name), el("td", Number(d.threshold).toFixed(4)),
             el("td", d.label, { "class": d.label === positive ? "pos" : "neg", "data-decision": name }));
  return row;
}
function showHeatmap(heatmap) {
  const png = heatmap && typeof heatmap.overlay_png === "string" && heatmap.overlay_png.startsWith(OVERLAY_PREFIX);
  $("overlay").hidden = !png;
  if (png) $("overlay").src = heatmap.overlay_png;
  $("heatnote").replaceChildren(el("small", png
    ? `heatmap: class activation map (${heatmap.shape.join("×")} grid), coloured over its own min..max: ` +
      "where the model looked, not how sure it is."
    : "this model has no heatmap output"));
}
function showSite(site) {
  if (!site) { $("site").replaceChildren(el("small", "no site check: this model has no site model")); return; }
  $("site").replaceChildren(site.outside_training_data
    ? el("b", `OUTSIDE the training data (in_distribution ${Number(site.score).toFixed(3)} < ${site.flag_below}): ` +
         "treat this answer with caution", { id: "outside" })
    : el("small", `like the training data (in_distribution ${Number(site.score).toFixed(3)})`, { id: "inside" }));
}
function show(answer, file) {
  const positive = info ? info.positive_label : "fractured";
  $("prob").replaceChildren(`P(${positive}) = `, el("b", Number(answer.probability).toFixed(4)));
  const rows = Object.entries(answer.decisions).map(([name, d]) => decisionRow(name, d, positive));
  $("decisions").querySelector("tbody").replaceChildren(...rows);
  $("decisions").hidden = false;
  showSite(answer.in_distribution);
  const l = answer.latency_ms;
  $("latency").replaceChildren(el("small",
    `latency: model ${l.model} ms, decode ${l.decode} ms, total ${l.total} ms (server side) · ` +
    `${answer.image.width}×${answer.image.height} px · `), el("small", file.name, { id: "filename" }));
  showHeatmap(answer.heatmap);
  $("status").replaceChildren(el("span", "done", { id: "done" }));
}
async function send(file) {
  $("error").textContent = ""; $("status").textContent = "classifying " + file.name + "…";
  const t = $("token").value; if (t) sessionStorage.setItem("fe-token", t);
  try {
    const r = await fetch("/v1/predict?name=" + encodeURIComponent(file.name),
                          { method: "POST", body: file, headers: headers() });
    const answer = await r.json();
    if (!r.ok) { $("error").textContent = `${r.status}: ${answer.error}`; $("status").textContent = "failed";
                 if (r.status === 401) $("tokenrow").hidden = false; return; }
    if (!info) await loadInfo();
    show(answer, file);
  } catch (e) { $("error").textContent = String(e); $("status").textContent = "failed"; }
}
$("drop").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (e) => { if (e.target.files[0]) send(e.target.files[0]); });
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => { e.preventDefault(); $("drop").classList.remove("over");
  if (e.dataTransfer.files[0]) send(e.dataTransfer.files[0]); });
$("token").addEventListener("change", loadInfo);
loadInfo();
