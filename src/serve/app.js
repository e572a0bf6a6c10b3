"use strict";
// impasto serve's page: pick a photo and paintings, submit a job (POST /api/jobs), watch it
// paint through its events, keep every result in the history. Only this server's API is used.

const $ = (id) => document.getElementById(id);
const state = { content: null, styles: [], options: [], watching: null, events: null };

function thumb(file, into) {
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = file.name;
  img.title = file.name;
  into.append(img);
}

function showPicked() {
  $("content-thumb").replaceChildren();
  if (state.content) thumb(state.content, $("content-thumb"));
  $("style-thumbs").replaceChildren();
  state.styles.forEach((f) => thumb(f, $("style-thumbs")));
  photoForRegions();
}

function pickers() {
  $("content").addEventListener("change", (e) => { state.content = e.target.files[0] || null; showPicked(); });
  $("style").addEventListener("change", (e) => { state.styles = [...e.target.files]; showPicked(); });
  const zones = [["content-drop", (fs) => { state.content = fs[0]; }],
                 ["style-drop", (fs) => { state.styles = state.styles.concat(fs); }]];
  for (const [zone, take] of zones) {
    $(zone).addEventListener("dragover", (e) => e.preventDefault());
    $(zone).addEventListener("drop", (e) => { e.preventDefault(); take([...e.dataTransfer.files]); showPicked(); });
  }
}

// Regions: a brush per painting, painted on the photo; each painting's strokes become its
// mask (white where it applies), sent as the job's `mask` files in the paintings' order.
const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4"];
const regions = { masks: [], brush: 0, painted: false, photo: null, drawing: 0 };

function resetRegions() {
  regions.masks = [];
  regions.painted = false;
  $("brushes").replaceChildren();
  const canvas = $("paint");
  if (!regions.photo) { canvas.hidden = true; return; }
  const scale = Math.min(1, 512 / Math.max(regions.photo.width, regions.photo.height));
  canvas.width = Math.round(regions.photo.width * scale);
  canvas.height = Math.round(regions.photo.height * scale);
  canvas.hidden = false;
  canvas.getContext("2d").drawImage(regions.photo, 0, 0, canvas.width, canvas.height);
  regions.brush = Math.min(regions.brush, Math.max(0, state.styles.length - 1));
  state.styles.forEach((f, i) => {
    const mask = document.createElement("canvas");
    mask.width = canvas.width;
    mask.height = canvas.height;
    const g = mask.getContext("2d");
    g.fillStyle = "#000";
    g.fillRect(0, 0, mask.width, mask.height);
    regions.masks.push(mask);
    const label = document.createElement("label");
    label.className = "brush";
    label.style.borderColor = COLOURS[i % COLOURS.length];
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "brush";
    radio.checked = i === regions.brush;
    radio.addEventListener("change", () => { regions.brush = i; });
    label.append(radio, ` ${f.name}`);
    $("brushes").append(label);
  });
}

async function photoForRegions() {
  regions.photo = state.content ? await createImageBitmap(state.content) : null;
  resetRegions();
}

// A stroke at canvas pixel (x, y) for painting `i`: its mask white there, the others black.
function paintAt(x, y, i) {
  const r = Number($("brush-size").value);
  regions.masks.forEach((mask, k) => {
    const g = mask.getContext("2d");
    g.fillStyle = k === i ? "#fff" : "#000";
    g.beginPath();
    g.arc(x, y, r, 0, 2 * Math.PI);
    g.fill();
  });
  regions.painted = true;
  if (!regions.drawing) regions.drawing = requestAnimationFrame(redraw);
}

// The photo with each painting's region tinted in its brush's colour.
function redraw() {
  regions.drawing = 0;
  const canvas = $("paint");
  const g = canvas.getContext("2d");
  g.drawImage(regions.photo, 0, 0, canvas.width, canvas.height);
  const picture = g.getImageData(0, 0, canvas.width, canvas.height);
  regions.masks.forEach((mask, i) => {
    const m = mask.getContext("2d").getImageData(0, 0, mask.width, mask.height).data;
    const c = COLOURS[i % COLOURS.length].match(/[0-9a-f]{2}/g).map((h) => parseInt(h, 16));
    for (let p = 0; p < m.length; p += 4) {
      if (m[p] > 127) for (let k = 0; k < 3; k++) picture.data[p + k] = 0.6 * picture.data[p + k] + 0.4 * c[k];
    }
  });
  g.putImageData(picture, 0, 0);
}

function painting() {
  const canvas = $("paint");
  let down = false;
  const at = (e) => {
    const box = canvas.getBoundingClientRect();
    paintAt((e.clientX - box.left) * canvas.width / box.width, (e.clientY - box.top) * canvas.height / box.height, regions.brush);
  };
  canvas.addEventListener("pointerdown", (e) => { down = true; canvas.setPointerCapture(e.pointerId); at(e); });
  canvas.addEventListener("pointermove", (e) => { if (down) at(e); });
  canvas.addEventListener("pointerup", () => { down = false; });
  $("clear-regions").addEventListener("click", resetRegions);
}

// The masks as PNG files, or none when nothing was painted; a painting without a region is
// refused here (its style would apply nowhere).
async function maskFiles() {
  if (!regions.painted || regions.masks.length !== state.styles.length) return [];
  const files = [];
  for (const [i, mask] of regions.masks.entries()) {
    const pixels = mask.getContext("2d").getImageData(0, 0, mask.width, mask.height).data;
    if (!pixels.some((v, k) => k % 4 === 0 && v > 0)) throw new Error(`Paint a region for painting ${i + 1} (${state.styles[i].name}), or clear the regions.`);
    files.push(await new Promise((ok) => mask.toBlob((b) => ok(new File([b], `mask-${i}.png`, { type: "image/png" })), "image/png")));
  }
  return files;
}

async function fileFrom(url, name) {
  const blob = await (await fetch(url)).blob();
  return new File([blob], name, { type: blob.type });
}

async function gallery() {
  for (const g of await (await fetch("/api/gallery")).json()) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "style-pick";
    b.title = `${g.title} (${g.source})`;
    const img = document.createElement("img");
    img.src = `/gallery/${g.name}`;
    img.alt = g.title;
    b.append(img);
    b.addEventListener("click", async () => { state.styles.push(await fileFrom(img.src, g.name)); showPicked(); });
    $("gallery").append(b);
  }
}

async function advanced() {
  state.options = await (await fetch("/api/options")).json();
  for (const o of state.options) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.dataset.setting = o.name;
    input.placeholder = o.default ?? "";
    const help = document.createElement("small");
    help.textContent = o.help;
    label.append(`${o.name} `, input, help);
    $("options").append(label);
  }
  $("strength").addEventListener("input", sliders);
  $("brush").addEventListener("input", sliders);
  sliders();
}

function defaultOf(name) {
  const o = state.options.find((x) => x.name === name);
  return o && o.default !== null ? Number(o.default) : NaN;
}

// The style weight the slider gives: the default of the style loss the form chose (gram or
// w2, whose scales differ), times a power of ten.
function styleWeight() {
  const entry = state.options.find((x) => x.name === "style-weight");
  const field = $("options").querySelector('input[data-setting="style-loss"]');
  const loss = (field && field.value.trim()) || (state.options.find((x) => x.name === "style-loss") || {}).default;
  const base = Number((entry && entry.default_by_style_loss && entry.default_by_style_loss[loss]) || defaultOf("style-weight"));
  return Number((base * 10 ** (Number($("strength").value) - 2)).toPrecision(2));
}

function sliders() {
  $("strength-out").textContent = `style weight ${styleWeight().toExponential(1)}`;
  $("brush-out").textContent = `${$("brush").value}x`;
}

const PRESETS = {
  draft: { size: 256, steps: 100 },
  standard: { size: 512, min_size: 256, steps: 150 },
  large: { size: 1024, min_size: 256, steps: 150 },
};

// The form as stylize's settings: the plain controls first, then any advanced field filled.
function settings() {
  const s = { ...PRESETS[$("quality").value], style_weight: styleWeight(), style_scale: Number($("brush").value) };
  if ($("colours").checked) s.preserve_colors = "luminance";
  if ($("seamless").checked) s.seamless = true;
  for (const input of $("options").querySelectorAll("input")) {
    if (input.value.trim() !== "") s[input.dataset.setting.replaceAll("-", "_")] = input.value.trim();
  }
  // A size given by hand replaces the preset's scales.
  if ($("options").querySelector("input[data-setting='size']").value.trim() !== "" &&
      $("options").querySelector("input[data-setting='min-size']").value.trim() === "") delete s.min_size;
  return s;
}

async function submit(e) {
  e.preventDefault();
  $("error").textContent = "";
  if (!state.content || state.styles.length === 0) {
    $("error").textContent = "Pick a photo and at least one painting.";
    return;
  }
  let masks;
  try {
    masks = await maskFiles();
  } catch (err) {
    $("error").textContent = err.message;
    return;
  }
  const form = new FormData();
  form.append("content", state.content);
  state.styles.forEach((f) => form.append("style", f));
  masks.forEach((f) => form.append("mask", f));
  form.append("settings", JSON.stringify(settings()));
  const r = await fetch("/api/jobs", { method: "POST", body: form });
  const body = await r.json();
  if (!r.ok) {
    $("error").textContent = body.error;
    return;
  }
  $("advanced").open = false;
  watch(body.id);
  history();
}

function describe(job) {
  if (job.status === "queued") return job.position ? `waiting: ${job.position} jobs ahead` : "next in line";
  if (job.status === "running") {
    const eta = job.eta_seconds ? `, about ${Math.ceil(job.eta_seconds)} s left` : "";
    return `painting: step ${job.step} of ${job.steps}${eta}`;
  }
  return job.error ? `${job.status}: ${job.error}` : job.status;
}

function show(job) {
  $("current-status").textContent = describe(job);
  $("current-progress").value = job.steps ? job.step / job.steps : 0;
  if (job.losses) {
    const l = job.losses;
    $("losses").textContent = `losses: content ${l.content.toExponential(3)}, style ${l.style.toExponential(3)}, total ${l.total.toExponential(3)}`;
  }
  const done = job.status === "done";
  $("cancel").hidden = ["done", "failed", "cancelled"].includes(job.status);
  $("downloads").hidden = !done;
  if (done) {
    $("live").src = `/api/jobs/${job.id}/result`;
    $("download8").href = `/api/jobs/${job.id}/result`;
    $("download16").href = `/api/jobs/${job.id}/result?bits=16`;
  }
}

function watch(id) {
  if (state.events) state.events.close();
  state.watching = id;
  $("current").hidden = false;
  $("live").removeAttribute("src");
  $("current-title").textContent = `Job ${id}`;
  window.scrollTo(0, 0);
  const events = new EventSource(`/api/jobs/${id}/events`);
  state.events = events;
  let job = { id, status: "queued", step: 0, steps: 0 };
  events.addEventListener("status", (e) => {
    job = { ...job, ...JSON.parse(e.data) };
    show(job);
    if (["done", "failed", "cancelled"].includes(job.status)) { events.close(); history(); }
  });
  events.addEventListener("progress", (e) => { job = { ...job, status: "running", ...JSON.parse(e.data) }; show(job); });
  events.addEventListener("image", (e) => {
    const d = JSON.parse(e.data);
    job = { ...job, losses: d.losses };
    $("live").src = `/api/jobs/${id}/preview.png?v=${d.previews}`;
    show(job);
  });
}

async function again(job) {
  state.content = await fileFrom(`/api/jobs/${job.id}/content/0`, "content");
  state.styles = [];
  for (let i = 0; i < job.styles; i++) state.styles.push(await fileFrom(`/api/jobs/${job.id}/style/${i}`, `style-${i}`));
  showPicked();
  $("advanced").open = true;
  for (const input of $("options").querySelectorAll("input")) {
    const v = job.settings[input.dataset.setting.replaceAll("-", "_")] ?? job.settings[input.dataset.setting];
    input.value = v === undefined ? "" : Array.isArray(v) ? v.join(",") : String(v);
  }
  $("form").scrollIntoView();
}

function button(text, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", action);
  return b;
}

async function history() {
  const jobs = await (await fetch("/api/jobs")).json();
  const items = jobs.map((job) => {
    const li = document.createElement("li");
    li.dataset.id = job.id;
    const img = document.createElement("img");
    img.src = job.status === "done" ? `/api/jobs/${job.id}/result` : `/api/jobs/${job.id}/content/0`;
    img.alt = `job ${job.id}`;
    const text = document.createElement("span");
    const when = new Date(job.created * 1000).toLocaleString();
    text.textContent = `${when}: ${describe(job)}. ${JSON.stringify(job.settings)}`;
    li.append(img, text, button("Open", () => watch(job.id)), button("Again", () => again(job)),
              button(job.status === "running" || job.status === "queued" ? "Cancel" : "Delete", async () => {
                await fetch(`/api/jobs/${job.id}`, { method: "DELETE" });
                history();
              }));
    return li;
  });
  $("history").replaceChildren(...items);
}

$("cancel").addEventListener("click", async () => {
  if (state.watching) await fetch(`/api/jobs/${state.watching}`, { method: "DELETE" });
});
$("form").addEventListener("submit", submit);
pickers();
painting();
gallery();
advanced();
history();
