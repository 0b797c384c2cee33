// The S3E search page: plain DOM, no build step, nothing loaded from elsewhere.
// Every record field is put on the page as text (textContent, attributes), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 24;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// -- the API, with the token asked for once ---------------------------------------------------
let loggingIn = null;

function signIn() {
  loggingIn = loggingIn || login().finally(() => { loggingIn = null; });
  return loggingIn;
}

// Asked first, and never a 401: a page load with a live session (or no token configured)
// makes no request that fails; without one, the token is asked for before anything else.
async function ensureSession() {
  const r = await fetch("/session", { credentials: "same-origin" });
  if (!r.ok) return;
  const s = await r.json();
  if (s.token_required && !s.signed_in) await signIn();
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {  // the session ended while the page was open
    await signIn();
    return api(path, options);
  }
  return response;
}

function login() {
  const dialog = $("login");
  return new Promise((resolve) => {
    $("login-form").onsubmit = async (event) => {
      event.preventDefault();
      const r = await fetch("/login", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: $("token").value }),
      });
      if (r.ok) {
        $("token").value = "";
        $("login-error").textContent = "";
        dialog.close();
        resolve();
      } else if (r.status === 429) {
        const wait = r.headers.get("Retry-After") || "a few";
        $("login-error").textContent = `Too many wrong tokens: try again in ${wait} s.`;
      } else {
        $("login-error").textContent = "That token was refused.";
      }
    };
    if (!dialog.open) dialog.showModal();
    $("token").focus();
  });
}

// -- the state lives in the URL ---------------------------------------------------------------
const DICOM = ["modality", "body_part", "view_position", "manufacturer", "study_since", "study_until"];
const FIELDS = ["q", "mode", "label", "source", "since", "until", "min_anomaly", ...DICOM, "offset", "view", "image"];

function state() {
  const p = new URLSearchParams(location.search);
  return Object.fromEntries(FIELDS.map((k) => [k, p.get(k) || ""]));
}

function go(changes, replace = false) {
  const next = { ...state(), ...changes };
  const p = new URLSearchParams();
  for (const k of FIELDS) if (next[k]) p.set(k, next[k]);
  const url = p.toString() ? `/?${p}` : "/";
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

window.addEventListener("popstate", render);

// -- heat-maps: a G x G grid of weights drawn over an image -----------------------------------
function drawMap(canvas, map, grid, width, height) {
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  if (!map) return;
  const peak = Math.max(...map) || 1;
  const cells = new ImageData(grid, grid);
  map.forEach((v, i) => {
    const a = v / peak;
    cells.data.set([255, Math.round(200 * (1 - a)), 0, Math.round(200 * a)], i * 4);
  });
  const small = new OffscreenCanvas(grid, grid);
  small.getContext("2d").putImageData(cells, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, width, height);
}

function highlighted(caption, words) {
  // The caption as text nodes, with the matched words in <mark> (by word, never by HTML).
  const wanted = new Set(words.map((w) => w.toLowerCase()));
  const out = el("p", { class: "caption" });
  for (const part of caption.split(/(\s+|,)/)) {
    const bare = part.toLowerCase();
    out.append(wanted.has(bare) ? el("mark", { text: part }) : document.createTextNode(part));
  }
  return out;
}

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

// -- a result ------------------------------------------------------------------------------
function card(hit, query) {
  const matched = [...(hit.match?.keyword?.terms || []), ...Object.keys(hit.match?.semantic?.words || {})];
  const img = el("img", { src: hit.thumbnail_url, alt: hit.caption || "image", loading: "lazy", width: "192", height: "192" });
  const canvas = el("canvas", { class: "heat", "aria-hidden": "true" });
  const thumb = el("div", { class: "thumb" }, img, canvas);
  const words = el("div", { class: "query-words" });
  const labels = el("ul", { class: "chips" }, ...hit.labels.map((l) => el("li", { text: l })));
  const anomaly = hit.anomaly == null ? "" : ` · anomaly ${hit.anomaly.toFixed(2)}`;
  const meta = el("p", { class: "meta", text: `${when(hit.captured_at)} · ${hit.source}${anomaly}` });
  const why = el("p", { class: "why", text: query ? explain(hit) : "" });
  const open = el("a", { href: `/?${new URLSearchParams({ ...compact(state()), image: hit.id })}`, class: "open", "aria-label": `Open: ${hit.caption}` }, thumb);
  open.addEventListener("click", (e) => { e.preventDefault(); go({ image: hit.id }); });
  const article = el("article", { class: "card", "data-id": hit.id }, open, highlighted(hit.caption, matched), words, labels, meta, why);
  if (query && state().mode !== "keyword") showMatch(hit.id, query, img, canvas, words);
  return article;
}

function compact(s) {
  return Object.fromEntries(Object.entries(s).filter(([, v]) => v));
}

function explain(hit) {
  const parts = [];
  if (hit.match?.keyword) parts.push(`keyword #${hit.match.keyword.rank}`);
  if (hit.match?.semantic) parts.push(`meaning #${hit.match.semantic.rank} (${hit.match.semantic.score.toFixed(2)})`);
  return parts.length ? `found by ${parts.join(" and ")}` : "";
}

async function showMatch(id, query, img, canvas, words) {
  const r = await api(`/images/${encodeURIComponent(id)}/match?${new URLSearchParams({ q: query })}`);
  if (!r.ok) return;
  const got = await r.json();
  const draw = (k) => {
    const size = img.clientWidth || 192;
    drawMap(canvas, got.words[k]?.map, got.grid, size, size);
    [...words.children].forEach((b, i) => b.setAttribute("aria-pressed", String(i === k)));
  };
  got.words.forEach((w, k) => {
    const b = el("button", { type: "button", class: "word", text: w.word, title: `match ${w.score.toFixed(2)}: hover to see where` });
    b.addEventListener("mouseenter", () => draw(k));
    b.addEventListener("focus", () => draw(k));
    b.addEventListener("click", () => draw(k));
    words.append(b);
  });
  const first = () => draw(0);
  if (img.complete) first();
  else img.addEventListener("load", first, { once: true });
}

// -- search ----------------------------------------------------------------------------------
async function search() {
  const s = state();
  for (const k of ["q", "since", "until", "min_anomaly", ...DICOM]) $(k).value = s[k];
  $("mode").value = s.mode || "hybrid";
  const params = new URLSearchParams({ q: s.q, mode: s.mode || "hybrid", limit: PAGE, offset: s.offset || 0 });
  for (const k of ["label", "source", "min_anomaly", ...DICOM]) if (s[k]) params.set(k, s[k]);
  if (s.since) params.set("since", s.since);
  if (s.until) params.set("until", `${s.until}T23:59:59`);
  const r = await api(`/search?${params}`);
  const body = await r.json();
  const results = $("results");
  results.replaceChildren();
  if (!r.ok) {
    $("message").textContent = body.detail || "search failed";
    $("total").textContent = "";
    return;
  }
  $("message").textContent = body.message || (body.total ? "" : "No image matched.");
  $("total").textContent = `${body.total} image${body.total === 1 ? "" : "s"}`;
  results.append(...body.results.map((h) => card(h, s.q)));
  facets(body.facets, s);
  pager(body.total, Number(s.offset || 0));
}

function facets(all, s) {
  const box = $("facets");
  box.replaceChildren();
  for (const [field, title] of [["label", "labels"], ["source", "sources"]]) {
    const counts = all[title] || {};
    const names = Object.keys(counts);
    if (!names.length && !s[field]) continue;
    const group = el("div", { class: "facet", role: "group", "aria-label": title }, el("span", { text: `${title}: ` }));
    for (const name of names.sort((a, b) => counts[b] - counts[a])) {
      const on = s[field] === name;
      group.append(el("button", {
        type: "button", class: "toggle", "aria-pressed": String(on), text: `${name} ${counts[name]}`,
        onclick: () => go({ [field]: on ? "" : name, offset: "" }),
      }));
    }
    if (s[field] && !names.includes(s[field])) {
      group.append(el("button", { type: "button", class: "toggle", "aria-pressed": "true", text: `${s[field]} 0`, onclick: () => go({ [field]: "", offset: "" }) }));
    }
    box.append(group);
  }
}

function pager(total, offset) {
  const nav = $("pager");
  nav.replaceChildren();
  if (total <= PAGE) return;
  if (offset > 0) nav.append(el("button", { type: "button", text: "← Newer results", onclick: () => go({ offset: String(Math.max(0, offset - PAGE)) }) }));
  nav.append(el("span", { text: ` ${offset + 1}-${Math.min(offset + PAGE, total)} of ${total} ` }));
  if (offset + PAGE < total) nav.append(el("button", { type: "button", text: "More results →", onclick: () => go({ offset: String(offset + PAGE) }) }));
}

$("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const dicom = Object.fromEntries(DICOM.map((k) => [k, $(k).value.trim()]));
  go({ q: $("q").value.trim(), mode: $("mode").value, since: $("since").value, until: $("until").value, min_anomaly: $("min_anomaly").value, ...dicom, offset: "", view: "" });
});

// -- the detail view -------------------------------------------------------------------------
async function detail(id) {
  const dialog = $("detail");
  const r = await api(`/records/${encodeURIComponent(id)}`);
  if (!r.ok) { $("message").textContent = `No image ${id}.`; return; }
  const rec = await r.json();
  const original = $("original");
  original.src = `/images/${encodeURIComponent(id)}`;
  original.alt = rec.caption || rec.source_name || "image";
  $("mask").src = `/images/${encodeURIComponent(id)}/mask`;
  $("mask").hidden = !$("show-mask").checked;
  $("raw").href = `/records/${encodeURIComponent(id)}`;
  $("ood").hidden = !rec.out_of_domain;
  $("ood-domain").textContent = (rec.bundle.version || "").split("@")[0].split("-")[0] || "its own";
  $("legend").replaceChildren(...rec.segments.map((s) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.backgroundColor = /^#[0-9a-f]{6}$/.test(s.color || "") ? s.color : "#888";
    return el("li", {}, swatch, `${s.class} ${(100 * s.fraction).toFixed(1)}%`);
  }));
  $("labels").replaceChildren(...rec.labels.map((l) => el("li", { text: `${l.name} ${Number(l.score).toFixed(2)}` })));
  const facts = [["file", rec.source_name || "—"], ["source", rec.source], ["captured", when(rec.captured_at)],
    ["size", `${rec.width}×${rec.height}, ${rec.size} bytes`], ["bundle", `${rec.bundle.version} (${rec.bundle.precision})`],
    ["anomaly", rec.anomaly == null ? "—" : rec.anomaly.toFixed(2)],
    ...Object.entries(rec.dicom || {}).map(([k, v]) => [`DICOM ${k.replace("_", " ")}`, v]),
    ["timings", Object.entries(rec.timings || {}).map(([k, v]) => `${k} ${Number(v).toFixed(1)}`).join(", ")],
    ["ran on", Object.entries(rec.accelerators || {}).map(([k, v]) => `${k}: ${v}`).join(", ")]];
  $("facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  if (!dialog.open) dialog.showModal();
  await Promise.all([captionWords(id), queryWords(id), similar(id)]);
}

function overlay(map, grid) {
  const img = $("original");
  const size = () => drawMap($("overlay"), map, grid, img.clientWidth, img.clientHeight);
  if (img.complete && img.clientWidth) size();
  else img.addEventListener("load", size, { once: true });
}

async function captionWords(id) {
  const box = $("caption-words");
  box.replaceChildren();
  const r = await api(`/records/${encodeURIComponent(id)}/attention`);
  if (!r.ok) return;
  const att = await r.json();
  for (const w of att.words) {
    const blind = w.visual < 0.5;
    const b = el("button", {
      type: "button", class: blind ? "word blind" : "word", text: w.word,
      title: blind ? "this word did not look at the image" : `looked at the image (${(100 * w.visual).toFixed(0)}%)`,
    });
    const show = () => overlay(blind ? null : w.map, att.grid);
    b.addEventListener("mouseenter", show);
    b.addEventListener("focus", show);
    box.append(b, " ");
  }
}

async function queryWords(id) {
  const box = $("query-words");
  box.replaceChildren();
  const q = state().q;
  if (!q || state().mode === "keyword") return;
  const r = await api(`/images/${encodeURIComponent(id)}/match?${new URLSearchParams({ q })}`);
  if (!r.ok) return;
  const got = await r.json();
  box.append(el("span", { text: "query: " }));
  got.words.forEach((w, k) => {
    const b = el("button", { type: "button", class: "word query", text: w.word });
    const show = () => overlay(w.map, got.grid);
    b.addEventListener("mouseenter", show);
    b.addEventListener("focus", show);
    box.append(b, " ");
    if (k === 0) show();
  });
}

async function similar(id) {
  const box = $("similar");
  box.replaceChildren();
  const r = await api(`/images/${encodeURIComponent(id)}/similar?k=8`);
  if (!r.ok) { box.append(el("p", { text: "No similar images (not analysed by the running bundle)." })); return; }
  for (const s of (await r.json()).similar) {
    const a = el("a", { href: `/?image=${encodeURIComponent(s.id)}`, "aria-label": `Similar image, distance ${s.distance.toFixed(2)}` },
      el("img", { src: s.thumbnail_url, alt: "similar image", width: "96", height: "96" }));
    a.addEventListener("click", (e) => { e.preventDefault(); go({ image: s.id }); });
    box.append(a);
  }
}

$("show-mask").addEventListener("change", () => { $("mask").hidden = !$("show-mask").checked; });
$("close").addEventListener("click", () => $("detail").close());
$("detail").addEventListener("close", () => { if (state().image) go({ image: "" }); });

// -- latest images and the device's status -------------------------------------------------
let latestTimer = null;

async function latest() {
  const r = await api(`/search?${new URLSearchParams({ q: "", mode: "keyword", sort: "recent", limit: PAGE, facets: "false" })}`);
  if (!r.ok) return;
  const box = $("latest");
  const known = new Set([...box.children].map((c) => c.dataset.id));
  const hits = (await r.json()).results;
  box.replaceChildren(...hits.map((h) => {
    const c = card(h, "");
    if (known.size && !known.has(h.id)) c.classList.add("new");
    return c;
  }));
}

async function status() {
  const r = await api("/healthz");
  if (!r.ok) return;
  const h = await r.json();
  const queue = h.records ? (h.records.pending || 0) : 0;
  const due = Object.entries(h.records || {}).filter(([k, v]) => k.startsWith("due_") && v).map(([k, v]) => `${k.slice(4)} ${v}`);
  const bundles = [h.bundle, h.catch_all].filter(Boolean).map((b) => `${b.name} (${b.precision})`).join(" + ");
  const parts = [bundles, h.accelerator ? `on ${Object.values(h.accelerator.models || {})[0] || h.accelerator.requested}` : "",
    `${h.index_documents ?? "?"} images`, queue ? `${queue} to analyse` : "", due.length ? `waiting: ${due.join(", ")}` : "",
    h.mqtt ? `MQTT ${h.mqtt.connected ? "up" : "down"}` : "", h.status !== "ok" ? h.status : ""];
  $("status").textContent = parts.filter(Boolean).join(" · ");
}

// -- uploads ---------------------------------------------------------------------------------
function upload(file) {
  const row = el("div", { class: "upload" }, el("span", { text: file.name }));
  const bar = el("progress", { max: "100", value: "0" });
  row.append(bar);
  $("uploads").append(row);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/images");
  xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
  xhr.setRequestHeader("X-S3E-Request", "1");
  xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name).slice(0, 200));
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
    if (xhr.status === 401) { signIn().then(() => { row.remove(); upload(file); }); return; }
    if (xhr.status >= 400) { row.append(el("span", { class: "error", text: ` refused: ${body.detail || xhr.status}` })); return; }
    row.append(el("span", { text: body.duplicate ? " already here" : " stored; analysing…" }));
    setTimeout(() => row.remove(), 6000);
    if (state().view === "latest") latest();
    else go({ view: "latest", image: "" });
  };
  xhr.onerror = () => row.append(el("span", { class: "error", text: " upload failed" }));
  xhr.send(file);
}

$("file").addEventListener("change", (e) => { [...e.target.files].forEach(upload); e.target.value = ""; });
window.addEventListener("dragover", (e) => { e.preventDefault(); $("drop").hidden = false; });
window.addEventListener("dragleave", (e) => { if (!e.relatedTarget) $("drop").hidden = true; });
window.addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").hidden = true;
  [...e.dataTransfer.files].filter((f) => f.type.startsWith("image/")).forEach(upload);
});

// -- one render for every state --------------------------------------------------------------
let rendered = "";

async function render() {
  const s = state();
  const isLatest = s.view === "latest";
  $("search-view").hidden = isLatest;
  $("latest-view").hidden = !isLatest;
  $("nav-search").setAttribute("aria-current", String(!isLatest));
  $("nav-latest").setAttribute("aria-current", String(isLatest));
  clearInterval(latestTimer);
  const key = JSON.stringify({ ...s, image: "" });
  if (isLatest) {
    await latest();
    latestTimer = setInterval(latest, 2000);
  } else if (key !== rendered) {
    await search();
  }
  rendered = isLatest ? "" : key;
  if (s.image) await detail(s.image);
  else if ($("detail").open) $("detail").close();
}

for (const a of document.querySelectorAll("nav a[data-view]")) {
  a.addEventListener("click", (e) => { e.preventDefault(); go({ view: a.dataset.view === "latest" ? "latest" : "", image: "" }); });
}
document.addEventListener("keydown", (e) => {
  if (e.key === "/" && document.activeElement.tagName !== "INPUT") { e.preventDefault(); $("q").focus(); }
});

ensureSession().then(() => {
  render();
  status();
  setInterval(status, 5000);
});
