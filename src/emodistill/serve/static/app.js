// emodistill page: upload or record a video, show its prediction. Talks only to this service (/v1/*).
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const MODS = { text: "L", audio: "A", vision: "V" };
const state = { token: sessionStorage.getItem("emodistill-token") || "", file: null, stream: null, live: false,
                liveRun: 0, model: null };
const MAX_UNANSWERED = 2;  // live windows in flight at once; more are skipped rather than queued

// ---- talking to the service ------------------------------------------------------------------------------
function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function getJSON(path) {
  const r = await fetch(path, { headers: headers() });
  return answer(r.status, await r.text());
}

function answer(status, text) {
  let body;
  try { body = JSON.parse(text); } catch (e) { body = { error: text || "no answer" }; }
  if (status === 401) { $("token-box").hidden = false; }
  if (status < 200 || status >= 300) { throw new Error(`${status}: ${body.error || text}`); }
  return body;
}

// POST a form with upload progress (fetch has none); resolves to the JSON answer.
function postForm(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    xhr.onload = () => { try { resolve(answer(xhr.status, xhr.responseText)); } catch (e) { reject(e); } };
    xhr.onerror = () => reject(new Error("the service cannot be reached"));
    xhr.send(form);
  });
}

function videoForm(blob, name) {
  const form = new FormData();
  form.append("video", blob, name);
  const text = $("transcript").value.trim();
  if (text) form.append("transcript", text);
  return form;
}

// ---- the model -------------------------------------------------------------------------------------------
async function loadModel() {
  try {
    const m = await getJSON("/v1/model");
    state.model = m;
    $("token-box").hidden = true;
    const asr = m.speech_recognition ? "speech recognition on" : "transcript needed";
    $("model-line").textContent = `${m.model} · ${m.backend} · ${m.spec.aligned ? "aligned" : "unaligned"} · ` +
      (m.videos ? asr : "features only (no videos)") + ` · emodistill ${m.version}`;
    if (!m.videos) { $("model-line").textContent += " — this model cannot read videos"; }
  } catch (e) {
    $("model-line").textContent = "model not available: " + e.message;
  }
}

// ---- progress and errors ---------------------------------------------------------------------------------
function busy(text) {
  $("progress").hidden = !text;
  $("progress-text").textContent = text || "";
  $("predict").disabled = !!text || !state.file;
}

function fail(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

// ---- input: file, drop, webcam ---------------------------------------------------------------------------
function useFile(file) {
  state.file = file;
  $("file-name").textContent = file ? `${file.name} (${(file.size / 1e6).toFixed(2)} MB)` : "";
  $("predict").disabled = !file;
  if (file) { showVideo(file); }
}

function showVideo(blob) {
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  $("player-note").hidden = true;
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
}

function range() {
  return state.model ? state.model.labels.range : [-3, 3];
}

async function predictFile() {
  if (!state.file) return;
  fail("");
  const limit = state.model && state.model.limits.max_upload_mb;
  if (limit && state.file.size > limit * 1e6) {
    fail(`the file is ${(state.file.size / 1e6).toFixed(1)} MB, over the service's limit of ${limit} MB`);
    return;
  }
  const timeline = $("as-timeline").checked;
  const form = videoForm(state.file, state.file.name);
  if (timeline) form.append("segments", $("segments").value);
  busy("uploading… 0%");
  try {
    const out = await postForm(timeline ? "/v1/timeline" : "/v1/predict", form, (f) => {
      busy(f < 1 ? `uploading… ${Math.round(100 * f)}%` : (timeline ? "scoring the segments…" : "predicting…"));
    });
    if (timeline) showTimeline(out); else showResult(out);
  } catch (e) {
    fail(e.message);
  } finally {
    busy("");
  }
}

async function startCamera() {
  if (!window.isSecureContext || !navigator.mediaDevices) {
    fail("the camera needs a secure page: open the service as http://localhost or 127.0.0.1, or over https");
    return;
  }
  if (!window.MediaRecorder) {
    fail("this browser cannot record (no MediaRecorder)");
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (e) {
    fail("camera or microphone not available: " + e.message);
    return;
  }
  const preview = $("preview");
  preview.srcObject = state.stream;
  preview.hidden = false;
  await preview.play();
  $("record").disabled = $("live").disabled = false;
  $("camera").disabled = true;
}

function recorderType() {
  for (const t of ["video/webm;codecs=vp8,opus", "video/webm;codecs=vp9,opus", "video/webm", "video/mp4"]) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported(t)) return t;
  }
  return "";
}

// One self-contained clip of `seconds` from the camera stream (each window gets its own recorder, so each
// blob is a whole WebM file with its own header).
function recordClip(seconds) {
  return new Promise((resolve, reject) => {
    const type = recorderType();
    const rec = new MediaRecorder(state.stream, type ? { mimeType: type } : {});
    const parts = [];
    rec.ondataavailable = (e) => { if (e.data.size) parts.push(e.data); };
    rec.onstop = () => resolve(new Blob(parts, { type: rec.mimeType || "video/webm" }));
    rec.onerror = (e) => reject(e.error || new Error("recording failed"));
    rec.start();
    setTimeout(() => rec.state !== "inactive" && rec.stop(), seconds * 1000);
  });
}

async function recordOnce() {
  fail("");
  const seconds = Number($("window-s").value);
  busy(`recording ${seconds} s…`);
  $("record").disabled = $("live").disabled = true;
  try {
    const blob = await recordClip(seconds);
    showVideo(blob);
    busy("predicting…");
    showResult(await postForm("/v1/predict", videoForm(blob, "webcam.webm")));
  } catch (e) {
    fail(e.message);
  } finally {
    busy("");
    $("record").disabled = $("live").disabled = false;
  }
}

// Live mode: record window after window; each is sent as soon as it is recorded, while the next one records.
// A run has a number: pressing Stop ends it after its current window (that window is dropped), and Live
// stays disabled until it has ended, so two runs never record at once.
async function toggleLive() {
  if (state.live) {
    state.live = false;
    $("live").disabled = true;  // re-enabled when the running window has ended
    return;
  }
  state.live = true;
  const run = ++state.liveRun;
  $("live").classList.add("on");
  $("live").textContent = "Stop";
  $("record").disabled = true;
  const seconds = Number($("window-s").value);
  const points = [];
  $("live-box").hidden = false;
  drawLive(points, seconds);
  const t0 = performance.now();
  let sent = 0, done = 0, skipped = 0;
  const status = () => {
    const last = points.length ? points[points.length - 1] : null;
    $("live-status").textContent = `${done} window(s) scored of ${sent} sent` +
      (skipped ? `, ${skipped} skipped (the service was still busy)` : "") +
      (last && !last.ok ? ` — last: ${last.why}` : "");
  };
  try {
    while (state.live && state.liveRun === run) {
      const start = (performance.now() - t0) / 1000;
      const blob = await recordClip(seconds);
      if (!state.live || state.liveRun !== run) break;
      if (sent - done >= MAX_UNANSWERED) { skipped++; status(); continue; }
      sent++;
      postForm("/v1/predict", videoForm(blob, "live.webm")).then((out) => {
        points.push({ t: start + seconds / 2, score: out.score, ok: true });
        if (state.liveRun === run) showResult(out);
      }).catch((e) => {
        points.push({ t: start + seconds / 2, score: 0, ok: false, why: e.message });
      }).finally(() => {
        done++;
        status();
        drawLive(points, seconds);
      });
    }
  } catch (e) {
    fail("live mode stopped: " + (e.message || e));
  } finally {
    if (state.liveRun === run) {
      state.live = false;
      $("live").classList.remove("on");
      $("live").textContent = "Live";
      $("live").disabled = $("record").disabled = false;
    }
  }
}

// ---- drawing ---------------------------------------------------------------------------------------------
function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, s, attrs) {
  const t = el("text", { x, y, ...(attrs || {}) }, parent);
  t.textContent = s;
  return t;
}

function colour(score) {  // neutral within a sixth of the label range around 0 (+-0.5 on -3..+3)
  const band = (range()[1] - range()[0]) / 12;
  return score > band ? "var(--pos)" : score < -band ? "var(--neg)" : "var(--mid)";
}

function showResult(out) {
  $("result").hidden = false;
  $("timeline").hidden = true;
  const score = $("score");
  score.textContent = (out.score >= 0 ? "+" : "") + out.score.toFixed(2);
  score.dataset.score = out.score;
  score.className = out.score >= 0 ? "pos" : "neg";
  $("label7").textContent = out.label_7_name !== undefined ? `${out.label_7_name} (${out.label_7})` :
    out.probability !== undefined ? `p = ${out.probability.toFixed(2)}` : `score on ${range().join(" … ")}`;
  $("label2").textContent = out.label_2;
  drawGauge(out.score);
  drawBranches(out.branches || {});
  drawEdges(out.edges || {});
  drawTimings(out.seconds || {});
  $("transcript-used").textContent = out.transcript ? `words: “${out.transcript}” (${out.timing})` : "";
}

function drawGauge(score) {
  const g = $("gauge");
  g.replaceChildren();
  const [lo, hi] = range();
  const x = (s) => 16 + (Math.max(lo, Math.min(hi, s)) - lo) / (hi - lo) * 284;
  for (let i = 0; i <= 6; i++) {  // seven ticks over the model's label range (-3 .. +3 for MOSI/MOSEI)
    const k = lo + (hi - lo) * i / 6;
    el("line", { x1: x(k), x2: x(k), y1: 8, y2: 22, stroke: "#999" }, g);
    text(g, x(k) - 6, 35, (k > 0 ? "+" : "") + Number(k.toFixed(2)));
  }
  el("rect", { x: 16, y: 12, width: 284, height: 6, fill: "#e5e8eb", rx: 3 }, g);
  el("circle", { cx: x(score), cy: 15, r: 7, fill: colour(score) }, g);
}

function drawBranches(branches) {
  const table = $("branches");
  table.replaceChildren();
  const spaces = Object.keys(branches);
  if (!spaces.length) { table.innerHTML = "<tr><td class='muted'>this model has no per-modality heads</td></tr>"; return; }
  const head = table.insertRow();
  head.innerHTML = "<th></th>" + spaces.map((s) => `<th>${s === "homo" ? "homogeneous" : "heterogeneous"}</th>`).join("");
  for (const m of Object.keys(branches[spaces[0]])) {
    const row = table.insertRow();
    row.insertCell().textContent = m;
    for (const s of spaces) {
      const v = branches[s][m];
      const cell = row.insertCell();
      cell.innerHTML = `<span class="bar" style="width:${Math.round(Math.abs(v) / range()[1] * 60)}px;background:${colour(v)}">` +
        `</span> ${v.toFixed(2)}`;
    }
  }
}

// Each space's GD-Unit as a triangle L (top), A (left), V (right); one curved arrow per edge
// teacher -> student, width proportional to the edge's weight (the six weights sum to 1).
function drawEdges(edges) {
  const box = $("edges");
  box.replaceChildren();
  const pos = { L: [110, 30], A: [30, 160], V: [190, 160] };
  for (const [space, weights] of Object.entries(edges)) {
    const svg = el("svg", { viewBox: "0 0 220 190", "data-space": space });
    const marker = el("marker", { id: `arrow-${space}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 5,
                                  markerHeight: 5, orient: "auto-start-reverse" }, el("defs", {}, svg));
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#2e86c1" }, marker);
    for (const [name, w] of Object.entries(weights)) {
      const [from, to] = name.split("->");
      const [x1, y1] = pos[from];
      const [x2, y2] = pos[to];
      const mx = (x1 + x2) / 2 + (y2 - y1) * 0.18;  // bend to the right of the direction: A->B and B->A apart
      const my = (y1 + y2) / 2 - (x2 - x1) * 0.18;
      const shrink = (x, y, tx, ty) => { const d = Math.hypot(tx - x, ty - y); return [x + (tx - x) * 18 / d, y + (ty - y) * 18 / d]; };
      const [sx, sy] = shrink(x1, y1, mx, my);
      const [ex, ey] = shrink(x2, y2, mx, my);
      const path = el("path", { d: `M${sx},${sy} Q${mx},${my} ${ex},${ey}`, fill: "none", stroke: "#2e86c1",
                                "stroke-width": (0.5 + 14 * w).toFixed(2), "stroke-opacity": 0.75,
                                "marker-end": `url(#arrow-${space})`, class: "edge", "data-edge": name,
                                "data-weight": w }, svg);
      el("title", {}, path).textContent = `${name}: ${w.toFixed(3)}`;
      text(svg, mx - 10, my + 4, w.toFixed(2), { fill: "#555" });
    }
    for (const [name, [x, y]] of Object.entries(pos)) {
      el("circle", { cx: x, cy: y, r: 15, fill: "#1c2833" }, svg);
      text(svg, x - 4, y + 4, name, { fill: "#fff" });
    }
    text(svg, 4, 12, space === "homo" ? "homogeneous" : "heterogeneous", { fill: "#333" });
    box.appendChild(svg);
  }
  if (!Object.keys(edges).length) box.innerHTML = "<p class='muted'>this model has no GD-Units</p>";
}

function drawTimings(seconds) {
  const table = $("timings");
  table.replaceChildren();
  const most = Math.max(...Object.values(seconds), 1e-9);
  for (const [k, v] of Object.entries(seconds)) {
    const row = table.insertRow();
    row.insertCell().textContent = k;
    row.insertCell().innerHTML = `<span class="bar" style="width:${Math.round(v / most * 120)}px;background:#5dade2">` +
      `</span> ${(1000 * v).toFixed(0)} ms`;
  }
}

function showTimeline(out) {
  $("result").hidden = true;
  $("timeline").hidden = false;
  const svg = $("timeline-plot");
  svg.replaceChildren();
  const W = 640, H = 200, L = 30, B = 20;
  const x = (t) => L + t / Math.max(out.duration, 1e-6) * (W - L - 10);
  const [lo, hi] = range();
  const y = (s) => 10 + (hi - Math.max(lo, Math.min(hi, s))) / (hi - lo) * (H - B - 10);
  for (const k of [lo, 0, hi]) {
    el("line", { x1: L, x2: W - 10, y1: y(k), y2: y(k), stroke: k ? "#eee" : "#999" }, svg);
    text(svg, 4, y(k) + 4, (k > 0 ? "+" : "") + k);
  }
  const list = $("segment-list");
  list.replaceChildren();
  const seek = (t) => { const p = $("player"); p.currentTime = t; p.play().catch(() => {}); };
  for (const s of out.segments) {
    const ok = s.status === "ok";
    const top = ok ? Math.min(y(s.score), y(0)) : 10;
    const height = ok ? Math.max(2, Math.abs(y(s.score) - y(0))) : H - B - 10;
    const rect = el("rect", { x: x(s.start), y: top, width: Math.max(2, x(s.end) - x(s.start)), height,
                              fill: ok ? colour(s.score) : "#e5e8eb", class: "seg", "data-start": s.start }, svg);
    el("title", {}, rect).textContent = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s: ` +
      (ok ? `${s.score.toFixed(2)} (${s.label_7_name || s.label_2})` : s.status);
    rect.addEventListener("click", () => seek(s.start));
    const li = document.createElement("li");
    li.textContent = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s · ` +
      (ok ? `${s.score.toFixed(2)} ${s.label_7_name || s.label_2}` : s.status) + (s.transcript ? ` · “${s.transcript}”` : "");
    li.addEventListener("click", () => seek(s.start));
    list.appendChild(li);
  }
  text(svg, W - 60, H - 4, `${out.duration.toFixed(0)} s`);
}

function drawLive(points, seconds) {
  const svg = $("live-chart");
  svg.replaceChildren();
  const W = 640, H = 160;
  const span = Math.max(60, ...points.map((p) => p.t + seconds));
  const x = (t) => 30 + t / span * (W - 40);
  const [lo, hi] = range();
  const y = (s) => 8 + (hi - Math.max(lo, Math.min(hi, s))) / (hi - lo) * (H - 24);
  for (const k of [lo, 0, hi]) {
    el("line", { x1: 30, x2: W - 10, y1: y(k), y2: y(k), stroke: k ? "#eee" : "#999" }, svg);
    text(svg, 4, y(k) + 4, (k > 0 ? "+" : "") + k);
  }
  const ok = points.filter((p) => p.ok).sort((a, b) => a.t - b.t);
  if (ok.length > 1) {
    el("polyline", { points: ok.map((p) => `${x(p.t)},${y(p.score)}`).join(" "), fill: "none", stroke: "#2e86c1",
                     "stroke-width": 2 }, svg);
  }
  for (const p of points) {
    const dot = el("circle", { cx: x(p.t), cy: p.ok ? y(p.score) : y(0), r: 4, class: p.ok ? "live-point" : "live-miss",
                               fill: p.ok ? colour(p.score) : "#bbb" }, svg);
    el("title", {}, dot).textContent = p.ok ? p.score.toFixed(2) : p.why;
  }
}

// ---- wiring ----------------------------------------------------------------------------------------------
$("file").addEventListener("change", (e) => useFile(e.target.files[0] || null));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) useFile(e.dataTransfer.files[0]);
});
$("player").addEventListener("error", () => {  // e.g. H.264 in a browser built without it: the service decodes
  $("player").hidden = true;                   // the file itself, so only the preview is lost
  $("player-note").hidden = false;
});
$("predict").addEventListener("click", predictFile);
$("camera").addEventListener("click", startCamera);
$("record").addEventListener("click", recordOnce);
$("live").addEventListener("click", toggleLive);
$("token-save").addEventListener("click", () => {
  state.token = $("token").value.trim();
  sessionStorage.setItem("emodistill-token", state.token);
  loadModel();
});
loadModel();
