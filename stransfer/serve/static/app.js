// The page of `stransfer serve`: pick a photo and a style, stylise through the HTTP API (/v1), show the result.
"use strict";

const $ = (id) => document.getElementById(id);
// A server started with --token prints its address with #token=...: the fragment never reaches a server log.
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const LABELS = {
  adain: "AdaIN: any style, seconds", swap: "Style swap: any style, seconds",
  johnson: "Johnson: trained styles, fastest", gatys: "Gatys: best, minutes", texture: "Texture of the style, minutes",
};
const state = { catalogue: null, photo: null, photoName: "photo", style: null, styleFile: null, job: null, url: null };

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { ...options, headers });
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try { message = (await response.json()).message || message; } catch (e) { /* not JSON: keep the status */ }
  if (response.status === 401) message = "this server needs its token: open the address `stransfer serve` printed";
  throw new Error(message);
}

const engine = () => state.catalogue.engines.find((e) => e.name === $("engine").value);
const strengthWeight = () => 5 * 2 ** Number($("strength").value); // Gatys' default style weight is 5

function stylesFor(e) {
  if (e.style === "images") return state.catalogue.styles.filter((s) => s.image);
  const models = new Set(state.catalogue.models.filter((m) => m.engine === e.name).map((m) => m.name));
  return state.catalogue.styles.filter((s) => s.models.some((m) => models.has(m)));
}

function modelFor(e, styleName) {
  // A model trained on that style alone, else one holding it among others.
  const held = state.catalogue.models.filter((m) => m.engine === e.name && m.styles.includes(styleName));
  return held.find((m) => m.styles.length === 1) || held[0];
}

function tile(label, src, selected, onClick, extraClass = "") {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `style-tile ${extraClass}`;
  button.title = label;
  button.setAttribute("aria-pressed", String(selected));
  if (src) {
    const img = document.createElement("img");
    img.src = src;
    img.alt = label;
    button.append(img);
  } else {
    const span = document.createElement("span");
    span.textContent = label;
    button.append(span);
  }
  button.addEventListener("click", onClick);
  return button;
}

function renderStyles() {
  const e = engine();
  const offered = stylesFor(e);
  const upload = e.style === "images" && state.styleFile;
  const valid = state.style && (state.style.kind === "upload" ? upload
    : offered.some((s) => s.name === state.style.name));
  if (!valid) state.style = offered.length ? { kind: "shipped", name: offered[0].name } : null;
  const pick = (style) => () => { state.style = style; renderStyles(); };
  const tiles = offered.map((s) => tile(s.name.replaceAll("_", " "), s.thumbnail,
    state.style?.kind === "shipped" && state.style.name === s.name, pick({ kind: "shipped", name: s.name })));
  if (upload) {
    tiles.push(tile(state.styleFile.name, state.styleUrl, state.style?.kind === "upload", pick({ kind: "upload" })));
  }
  if (e.style === "images") {
    tiles.push(tile("+ your own style image", null, false, () => $("style-input").click(), "add"));
  }
  $("styles").replaceChildren(...tiles);
}

function updateControls() {
  const e = engine();
  for (const [option, id] of [["alpha", "alpha"], ["style_weight", "strength"]]) {
    const on = e.options.includes(option);
    $(id).disabled = !on;
    $(`${id}-control`).classList.toggle("disabled", !on);
  }
  $("keep-colours").disabled = e.name === "texture";
  $("go").textContent = e.name === "texture" ? "Make texture" : "Stylise";
  renderStyles();
}

function formData() {
  const e = engine();
  const data = new FormData();
  if (e.name !== "texture") data.append("content", state.photo);
  data.append("method", e.name);
  data.append("size", $("size").value);
  if (state.style.kind === "upload") {
    data.append("style", state.styleFile);
  } else if (e.style === "images") {
    data.append("style_name", state.style.name);
  } else {
    const model = modelFor(e, state.style.name);
    data.append("model", model.name);
    if (model.styles.length > 1) data.append("style_name", state.style.name);
  }
  if (e.options.includes("alpha")) data.append("alpha", $("alpha").value);
  if (e.options.includes("style_weight")) data.append("style_weight", String(strengthWeight()));
  if ($("keep-colours").checked && e.name !== "texture") data.append("preserve_color", "luminance");
  return data;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function runJob(data) {
  const job = await (await api("/v1/jobs", { method: "POST", body: data })).json();
  state.job = job.id;
  $("progress").value = 0;
  $("progress").hidden = $("cancel").hidden = false;
  try {
    for (;;) {
      await sleep(500);
      const now = await (await api(`/v1/jobs/${job.id}`)).json();
      $("progress").value = now.progress;
      say(now.total ? `${now.status}: step ${now.step} of ${now.total}` : `${now.status}…`);
      if (now.status === "done") return await (await api(now.result)).blob();
      if (now.status === "failed") throw new Error(now.error.message);
      if (now.status === "cancelled") throw new Error("cancelled");
    }
  } finally {
    state.job = null;
    $("progress").hidden = $("cancel").hidden = true;
  }
}

function show(blob) {
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = URL.createObjectURL(blob);
  $("result").src = state.url;
  $("result").hidden = false;
  $("result-hint").hidden = true;
  const style = state.style.kind === "upload" ? "own-style" : state.style.name;
  $("download").href = state.url;
  $("download").download = `${state.photoName}_${style}_${engine().name}.png`;
  $("download").hidden = false;
}

async function stylise() {
  const e = engine();
  if (e.name !== "texture" && !state.photo) return say("Pick a photo first.", true);
  if (!state.style) return say("Pick a style first.", true);
  $("go").disabled = true;
  say(e.slow ? "Queued…" : "Working…");
  const started = performance.now();
  try {
    const blob = e.slow ? await runJob(formData())
      : await (await api("/v1/stylize", { method: "POST", body: formData() })).blob();
    show(blob);
    say(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
  } catch (error) {
    say(error.message, true);
  } finally {
    $("go").disabled = false;
  }
}

function setPhoto(file) {
  if (!file) return;
  state.photo = file;
  state.photoName = file.name.replace(/\.[^.]*$/, "") || "photo";
  $("photo").src = URL.createObjectURL(file);
  $("photo").hidden = false;
  $("drop-hint").hidden = true;
}

function wire() {
  $("photo-input").addEventListener("change", (event) => setPhoto(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    setPhoto(event.dataTransfer.files[0]);
  });
  $("style-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (!file) return;
    state.styleFile = file;
    state.styleUrl = URL.createObjectURL(file);
    state.style = { kind: "upload" };
    renderStyles();
  });
  $("engine").addEventListener("change", updateControls);
  $("alpha").addEventListener("input", () => { $("alpha-value").value = $("alpha").value; });
  $("strength").addEventListener("input", () => { $("strength-value").value = strengthWeight().toFixed(2); });
  $("go").addEventListener("click", stylise);
  $("cancel").addEventListener("click", () => state.job && api(`/v1/jobs/${state.job}`, { method: "DELETE" })
    .catch((error) => say(error.message, true)));
}

async function start() {
  wire();
  try {
    state.catalogue = await (await api("/v1/models")).json();
  } catch (error) {
    return say(error.message, true);
  }
  for (const e of state.catalogue.engines) $("engine").add(new Option(LABELS[e.name] || e.name, e.name));
  $("engine").value = state.catalogue.engines.some((e) => e.name === "adain") ? "adain" : $("engine").value;
  const largest = state.catalogue.limits.max_size;
  const sizes = [256, 384, 512, 768, 1024, 1536, 2048].filter((size) => size <= largest);
  for (const size of sizes.length ? sizes : [largest]) $("size").add(new Option(`${size} px`, String(size)));
  $("size").value = sizes.includes(512) ? "512" : String(sizes.at(-1) || largest);
  updateControls();
  say("Pick a photo and a style.");
}

start();
