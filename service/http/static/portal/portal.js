// The victims' page: photos are hashed here (../hashing/, the CLI's algorithms) and only
// the hashes go to the service's JSON API (/v1/cases). Nothing is stored in the browser.

import { entriesOf, mergeVariants } from "../hashing/variants.js";
import { preferredLanguage, text } from "./texts.js";

const $ = (id) => document.getElementById(id);
let lang = preferredLanguage(navigator.languages?.length ? navigator.languages : [navigator.language ?? "en"]);
const t = (key, values) => text(lang, key, values);

// Each photo: its list item, state and, once hashed, the entries to send.
const photos = [];
let nextId = 0;

// Decoded as the CLI decodes (Pillow): EXIF orientation applied, colour profiles ignored,
// colours not multiplied by transparency.
const DECODE = { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" };

// One worker per core, up to 3: PDQ of the full photo, pHash of it, and the variants
// from its downscale (variants.js shares).
const PARTS = Math.min(3, Math.max(1, navigator.hardwareConcurrency || 1));
const workers = Array.from({ length: PARTS }, () => new Worker(new URL("./worker.js", import.meta.url), { type: "module" }));
const waiting = new Map();
for (const worker of workers) {
  worker.onmessage = ({ data }) => {
    const done = waiting.get(data.id);
    waiting.delete(data.id);
    if (done) done(data);
  };
}

function hashParts(bitmap, id) {
  return Promise.all(
    workers.map((worker, part) => {
      const key = `${id}:${part}`;
      return new Promise((resolve, reject) => {
        waiting.set(key, (data) => (data.error ? reject(new Error(data.error)) : resolve(data.variants)));
        worker.postMessage({ id: key, bitmap, part, parts: PARTS });
      });
    }),
  );
}

function render(photo) {
  const { status, values } = photo;
  photo.info.textContent = t(status, values);
  photo.info.classList.toggle("refused", ["unreadable", "lowQuality", "featureless"].includes(status));
  photo.remove.textContent = t("remove");
  photo.remove.setAttribute("aria-label", t("removeNamed", { name: photo.file.name }));
}

function updateProgress() {
  const live = photos.filter((p) => !p.removed);
  $("progress").max = Math.max(1, live.length);
  $("progress").value = live.filter((p) => p.status !== "hashing").length;
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-text]")) el.textContent = t(el.dataset.text);
  for (const el of document.querySelectorAll("[data-label]")) el.setAttribute("aria-label", t(el.dataset.label));
  $("language").lang = lang === "en" ? "fr" : "en";
  for (const photo of photos) if (!photo.removed) render(photo);
}

let queue = Promise.resolve();

function addPhoto(file) {
  const photo = { id: nextId++, file, status: "hashing", values: {}, entries: [], removed: false };
  const li = document.createElement("li");
  const img = document.createElement("img");
  img.alt = "";
  const url = URL.createObjectURL(file);
  img.src = url;
  const name = document.createElement("span");
  name.className = "info";
  const label = document.createElement("strong");
  label.textContent = file.name;
  photo.info = document.createElement("span");
  photo.info.className = "status";
  name.append(label, document.createElement("br"), photo.info);
  photo.remove = document.createElement("button");
  photo.remove.type = "button";
  photo.remove.className = "secondary remove";
  photo.remove.onclick = () => {
    photo.removed = true;
    li.remove();
    updateProgress();
  };
  li.append(img, name, photo.remove);
  photo.li = li;
  $("photo-list").append(li);
  photos.push(photo);
  render(photo);
  updateProgress();
  queue = queue.then(() => hashPhoto(photo, img, url));
}

async function hashPhoto(photo, img, url) {
  const started = performance.now();
  try {
    const bitmap = await createImageBitmap(photo.file, DECODE);
    const parts = await hashParts(bitmap, photo.id);
    bitmap.close();
    const { entries, refused } = entriesOf(mergeVariants(...parts));
    const pdq = refused.find((r) => r.signal === "pdq");
    if (pdq) {
      photo.status = pdq.reason === "low-quality" ? "lowQuality" : "featureless";
      photo.values = { quality: pdq.quality ?? 0 };
    } else {
      photo.entries = entries;
      photo.status = "hashed";
      photo.values = { count: entries.length };
    }
  } catch {
    photo.status = "unreadable";
  }
  photo.li.dataset.hashMs = String(Math.round(performance.now() - started));
  photo.li.dataset.state = photo.status;
  try {
    await img.decode();
  } catch {
    // not displayable: nothing to keep
  }
  URL.revokeObjectURL(url);
  if (!photo.removed) render(photo);
  updateProgress();
}

async function api(method, path, { body, secret } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (secret !== undefined) headers["x-withdrawal-secret"] = secret;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
  let json = {};
  try {
    json = await response.json();
  } catch {
    // an empty or non-JSON answer: the status says enough
  }
  return { response, json };
}

function refusal(response, json) {
  if (response.status === 429) {
    const seconds = Number(response.headers.get("retry-after")) || 60;
    return t("rateLimited", { minutes: Math.max(1, Math.ceil(seconds / 60)) });
  }
  if (response.status === 400) return t("tooMany", { message: json.message ?? response.status });
  if (response.status === 404) return t("notFound");
  return t("failed", { message: json.message ?? `HTTP ${response.status}` });
}

async function submit() {
  await queue;
  const ready = photos.filter((p) => !p.removed && p.status === "hashed" && p.entries.length);
  const message = $("submit-message");
  if (!ready.length) {
    message.textContent = t("nothingToSend");
    return;
  }
  const hashes = ready.flatMap((photo, image) =>
    photo.entries.map((e) => ({
      signal: e.signal,
      hex: e.hash,
      ...(e.quality === null ? {} : { quality: e.quality }),
      variant: e.variant,
      image,
    })),
  );
  $("submit").disabled = true;
  message.textContent = t("sending");
  try {
    const { response, json } = await api("POST", "/v1/cases", { body: { hashes } });
    if (!response.ok) {
      message.textContent = refusal(response, json);
      return;
    }
    message.textContent = t("sent");
    $("case-id").textContent = json.case_id;
    $("secret").textContent = json.withdrawal_secret;
    $("status-case").value = json.case_id;
    $("receipt").hidden = false;
  } catch (error) {
    message.textContent = t("failed", { message: String(error.message ?? error) });
  } finally {
    $("submit").disabled = false;
  }
}

function receiptText() {
  return t("savedText", { case: $("case-id").textContent, secret: $("secret").textContent });
}

async function copy() {
  try {
    await navigator.clipboard.writeText(receiptText());
    $("copy-result").textContent = t("copied");
  } catch (error) {
    $("copy-result").textContent = t("failed", { message: String(error.message ?? error) });
  }
}

function save() {
  const url = URL.createObjectURL(new Blob([receiptText()], { type: "text/plain" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = "case.txt";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function caseCall(method, output, onOk) {
  const id = $("status-case").value.trim();
  const secret = $("status-secret").value.trim();
  $("status-result").textContent = "";
  $("withdraw-result").textContent = "";
  if (!id || !secret) {
    $(output).textContent = t("needBoth");
    return;
  }
  try {
    const { response, json } = await api(method, `/v1/cases/${encodeURIComponent(id)}`, { secret });
    $(output).textContent = response.ok ? onOk(json) : refusal(response, json);
  } catch (error) {
    $(output).textContent = t("failed", { message: String(error.message ?? error) });
  }
}

$("photos").addEventListener("change", (event) => {
  for (const file of event.target.files) addPhoto(file);
  event.target.value = "";
});
$("submit").addEventListener("click", submit);
$("copy").addEventListener("click", copy);
$("save").addEventListener("click", save);
$("status-check").addEventListener("click", () =>
  caseCall("GET", "status-result", (json) => (json.withdrawn ? t("withdrawnAlready") : t("active", { count: json.active_hashes }))),
);
$("withdraw").addEventListener("click", () => caseCall("DELETE", "withdraw-result", (json) => t("withdrawn", { count: json.removed })));
$("language").addEventListener("click", () => {
  lang = lang === "en" ? "fr" : "en";
  applyLanguage();
});
applyLanguage();
document.body.dataset.ready = "true";
