// vid2mp3's web page: sign up or log in, upload a video (only its audio, extracted in the browser by extract.js, or
// the whole file, resumable; with its progress), follow the job live, download
// the MP3, see why a job failed, or cancel it; several videos dropped at once upload one or two at a time; the
// history lists every job of the user with download, cancel and delete. It talks only to the public function URLs named by config.json.
// The access token lives in this tab's sessionStorage and travels only in Authorization headers, never in a URL.
"use strict";

const FINAL_STATES = new Set(["done", "failed", "cancelled"]);
const CANCELLABLE_STATES = new Set(["uploaded", "converting"]);
const POLL_MILLISECONDS = 1000;
const byId = (id) => document.getElementById(id);

let api = null;          // {auth_url, upload_url, status_url, download_url}
let following = null;    // AbortController of the job being followed
let upload = null;       // the upload under way (its abort() terminates it)
let currentJob = null;   // the last view of the current job

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.error)) || `the server answered HTTP ${status}`);
    this.status = status;
    // A 422 of bad conversion options names each bad field and what is wrong with it.
    this.fields = (body && body.fields) || {};
  }
}

// --- Session --------------------------------------------------------------------------------------------------

function session() {
  return { token: sessionStorage.getItem("vid2mp3.token"), email: sessionStorage.getItem("vid2mp3.email") };
}

function authorization() {
  return { Authorization: `Bearer ${session().token}` };
}

function showSignedIn() {
  const { token, email } = session();
  byId("account").hidden = Boolean(token);
  byId("convert").hidden = !token;
  byId("who").hidden = !token;
  byId("who-email").textContent = email || "";
  byId("history").hidden = !token;
  if (!token) byId("job").hidden = true;
  if (token) refreshHistory();
}

function signOut(message) {
  stopFollowing();
  sessionStorage.removeItem("vid2mp3.token");
  sessionStorage.removeItem("vid2mp3.email");
  showSignedIn();
  say("account-message", message || "");
}

function say(id, text, ok = false) {
  const element = byId(id);
  element.textContent = text;
  element.classList.toggle("ok", ok);
  element.hidden = !text;
}

async function call(method, url, { json, headers } = {}) {
  const response = await fetch(url, {
    method,
    headers: { ...(json ? { "Content-Type": "application/json" } : {}), ...(headers || {}) },
    body: json ? JSON.stringify(json) : undefined,
    cache: "no-store",
  });
  const body = await response.json().catch(() => null);
  if (response.status === 401 && headers && headers.Authorization) {
    signOut("Your session has ended: log in again.");
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

async function logIn(email, password) {
  const answer = await call("POST", `${api.auth_url}/login`, { json: { email, password } });
  sessionStorage.setItem("vid2mp3.token", answer.access_token);
  sessionStorage.setItem("vid2mp3.email", email);
  showSignedIn();
  openLinkedJob();
}

// The email links to the page with `#job=<job id>`: once signed in, the page shows that job (its state, and the
// MP3 to download while it is kept).
function linkedJobId() {
  const match = /^#job=([0-9a-f]{32})$/.exec(window.location.hash);
  return match ? match[1] : null;
}

function openLinkedJob() {
  const jobId = linkedJobId();
  if (!jobId) return;
  if (!session().token) {
    say("account-message", "Log in to see the job you were sent a link to.", true);
    return;
  }
  history.replaceState(null, "", window.location.pathname);  // shown once; a reload starts afresh
  stopFollowing();
  byId("job").hidden = false;
  byId("convert").hidden = true;
  byId("job-title").textContent = "Your job";
  call("GET", `${api.status_url}/${jobId}`, { headers: authorization() })
    .then((job) => {
      byId("job-title").textContent = job.filename || "Your job";
      showJob(job);
      if (!FINAL_STATES.has(job.state)) follow(jobId);
    })
    .catch((error) => {
      showJob({ state: "not found" });
      say("job-message", error.status === 404 ? "No such job of yours: it may have been deleted." : error.message);
      byId("again").hidden = false;
    });
}

async function signUp(email, password) {
  await call("POST", `${api.auth_url}/signup`, { json: { email, password } });
  await logIn(email, password);
}

function accountAction(action) {
  return async (event) => {
    if (event) event.preventDefault();
    const form = byId("account-form");
    if (!form.reportValidity()) return;
    say("account-message", "");
    const email = byId("email").value.trim();
    const password = byId("password").value;
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    try {
      await action(email, password);
      byId("password").value = "";
    } catch (error) {
      say("account-message", error.message);
    } finally {
      for (const button of form.querySelectorAll("button")) button.disabled = false;
    }
  };
}

// --- Upload ---------------------------------------------------------------------------------------------------

function showUploadProgress(percent) {
  byId("upload-progress").value = percent;
  byId("upload-percent").textContent = `${Math.floor(percent)} %`;
}

// The conversion options as the upload function's fields (README: Conversion options): the quality, and every
// field of the options panel that is filled in.
function conversionOptions() {
  const fields = { quality: byId("quality").value };
  for (const input of byId("options").querySelectorAll("input, select")) {
    const value = input.type === "checkbox" ? (input.checked ? input.value : "") : input.value.trim();
    if (value) fields[input.name] = value;
  }
  return fields;
}

function showOptionErrors(fields) {
  for (const input of byId("convert").querySelectorAll("input[name], select[name]")) {
    input.setAttribute("aria-invalid", input.name in fields ? "true" : "false");
  }
  say("options-message", Object.entries(fields).map(([name, problem]) => `${name}: ${problem}`).join("; "));
  if (Object.keys(fields).length) byId("options").open = true;
}

// Waits before each new try of a dropped upload (tus-js-client's retryDelays, in ms): a network that comes back
// within about two minutes finds the upload going on by itself, from the bytes the server holds.
const UPLOAD_RETRY_DELAYS = [0, 1000, 2000, 5000, 10000, 20000, 30000, 60000];

// Bytes per PATCH: each request stays well inside the platform's request timeout (Knative's revision timeout, 300 s
// by default, is about 8 MiB at 30 kB/s) and whatever limits a proxy puts on a body, and the offset moves on chunk
// by chunk.
const UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024;

// A failed tus request worth trying again: no answer (the network), a server error, or a conflict (the request
// before it still holding the upload). Unlike tus-js-client's own rule, also while the browser says it is offline:
// each try then waits its delay, and the connection may be back.
function retryable(error) {
  const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
  return status === 0 || status >= 500 || status === 409 || status === 423;
}

// The answer a tus request failed with, as the page's other errors are (ApiError), or the words of a network error.
function uploadError(error) {
  const response = error.originalResponse;
  if (!response) return new Error("the upload did not get through: check the connection and try again");
  let body = null;
  try { body = JSON.parse(response.getBody()); } catch { /* not JSON: the status says enough */ }
  return new ApiError(response.getStatus(), body);
}

// Uploads with tus (README: Resumable uploads) through tus-js-client: a dropped connection is retried from the
// offset the server holds; the upload's URL is kept in localStorage until it completes, so the same file chosen
// again (after a reload) resumes where it stopped. Resolves with the job: its id is the upload's.
function sendVideo(file, options, onProgress, onRequest = () => {}) {
  return new Promise((resolve, reject) => {
    let cancelled = false;
    const upload = new tus.Upload(file, {
      endpoint: `${api.upload_url}/files/`,
      headers: authorization(),
      metadata: { filename: file.name, ...options },
      chunkSize: UPLOAD_CHUNK_BYTES,
      retryDelays: UPLOAD_RETRY_DELAYS,
      onShouldRetry: retryable,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => onProgress((100 * sent) / total),
      onSuccess: () => resolve({ job_id: upload.url.split("/").pop(), state: "uploaded" }),
      onError: (error) => {
        if (cancelled) return;
        // Offline past every retry: the upload goes on when the browser is back online.
        if (!navigator.onLine && retryable(error)) {
          window.addEventListener("online", () => upload.start(), { once: true });
          return;
        }
        reject(uploadError(error));
      },
    });
    onRequest({
      abort() {  // the upload is terminated: its bytes go
        cancelled = true;
        upload.abort(true).catch(() => {}).finally(() => reject(
          Object.assign(new Error("you cancelled the upload"), { aborted: true })));
      },
    });
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    });
  });
}

// --- Sending only the audio ---------------------------------------------------------------------------------------

// extract.js, which copies a video's audio tracks in this browser with mediabunny: imported when the first file is
// chosen, so a visit that uploads nothing never loads it.
let extraction = null;

// Extracts this large and more go with tus as the whole files do (resumable), without the cover frame: tus carries
// one file (the command's rule, client/vid2mp3_client/cli.py).
const RESUMABLE_FROM_BYTES = 64 * 1024 * 1024;

// Uploads what the conversion needs of `file`: its audio tracks, cover frame and chapters, extracted in this browser
// (extract.js), in one multipart request; or, where the page cannot extract them, the whole file (sendVideo). Tells
// which through onWords, in words. Resolves with the job, as sendVideo does.
async function sendMedia(file, options, onProgress, onWords, onRequest = () => {}) {
  let cancelled = false;
  const stopped = () => Object.assign(new Error("you cancelled the upload"), { aborted: true });
  onRequest({ abort() { cancelled = true; } });
  let module = null;
  let made = null;
  onWords("Extracting the audio in this browser");
  try {
    extraction = extraction || import("./extract.js");
    module = await extraction;
    made = await module.extract(file);
  } catch (error) {
    if (!module) extraction = null;  // not loaded (the network?): tried again with the next file
    const why = module && error instanceof module.NotExtracted ? error.message
      : `the page could not extract its audio (${error.message || error})`;
    onWords(`Sending the whole file: ${why}`);
  }
  if (cancelled) throw stopped();
  if (!made) return sendVideo(file, options, onProgress, onRequest);
  if (made.file.size >= RESUMABLE_FROM_BYTES) {
    onWords(`${made.words}; resumable, so without the cover frame`);
    const audio = new File([made.file], file.name, { type: made.file.type, lastModified: file.lastModified });
    return sendVideo(audio, options, onProgress, onRequest);
  }
  onWords(made.words);
  try {
    return await module.sendExtract(api.upload_url, authorization(), made, options, onProgress, onRequest);
  } catch (failure) {
    if (failure.aborted) throw stopped();
    if (failure.status === 401) signOut("Your session has ended: log in again.");
    if (!failure.status) throw new Error("the upload did not get through: check the connection and try again");
    throw new ApiError(failure.status, failure.body);
  }
}

async function start(file) {
  if (!file) return;
  stopFollowing();
  currentJob = null;
  byId("job").hidden = false;
  byId("convert").hidden = true;
  byId("job-title").textContent = file.name;
  showUploadProgress(0);
  showJob({ state: "uploading" });
  byId("cancel").hidden = false;
  say("sending", "", true);
  let accepted;
  showOptionErrors({});
  try {
    accepted = await sendMedia(file, conversionOptions(), showUploadProgress, (words) => say("sending", words, true),
                               (request) => { upload = request; });
  } catch (error) {
    upload = null;
    if (error.status === 422 && Object.keys(error.fields).length) {
      // Bad options: back to the form, each bad field marked, nothing was stored.
      byId("job").hidden = true;
      byId("convert").hidden = false;
      showOptionErrors(error.fields);
      return;
    }
    showJob({ state: error.aborted ? "cancelled" : "upload failed" });
    say("job-message", error.aborted ? "Upload cancelled: nothing was stored." : `The upload failed: ${error.message}`);
    byId("again").hidden = false;
    return;
  }
  upload = null;
  showUploadProgress(100);
  showJob({ job_id: accepted.job_id, state: accepted.state || "uploaded" });
  refreshHistory();
  follow(accepted.job_id);
}

// --- Following a job ------------------------------------------------------------------------------------------

function stopFollowing() {
  if (following) following.abort();
  following = null;
  if (upload) upload.abort();
}

const sleep = (milliseconds, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, milliseconds);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

// Reads a text/event-stream body, calling onJob with each `job` event's view; answers the last view seen.
async function readEvents(body, onJob) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return last;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;  // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = text;
        if (field === "data") data.push(text);
      }
      if (name === "job" && data.length) {
        last = JSON.parse(data.join("\n"));
        onJob(last);
      }
    }
  }
}

// Follows the job through status's event stream (fetch, so the token stays in a header), reconnecting when a
// stream ends early; falls back to polling when streams are refused or break.
async function follow(jobId) {
  const controller = new AbortController();
  following = controller;
  const { signal } = controller;
  const shown = (job) => { if (!signal.aborted) showJob(job); };
  let streaming = true;
  while (streaming && !signal.aborted) {
    try {
      const response = await fetch(`${api.status_url}/${jobId}/events`, {
        headers: { ...authorization(), Accept: "text/event-stream" }, cache: "no-store", signal,
      });
      if (response.status === 401) return signOut("Your session has ended: log in again.");
      if (!response.ok || !response.body) { streaming = false; break; }
      const last = await readEvents(response.body, shown);
      if (last && FINAL_STATES.has(last.state)) return;
    } catch (error) {
      if (signal.aborted) return;
      streaming = false;
    }
  }
  while (!signal.aborted) {
    try {
      const job = await call("GET", `${api.status_url}/${jobId}`, { headers: authorization() });
      shown(job);
      if (FINAL_STATES.has(job.state)) return;
    } catch (error) {
      if (error.status === 401 || error.status === 404) return say("job-message", error.message);
    }
    await sleep(POLL_MILLISECONDS, signal);
  }
}

function formatSeconds(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  return whole >= 60 ? `${Math.floor(whole / 60)} min ${whole % 60} s` : `${whole} s`;
}

function showJob(job) {
  currentJob = job.job_id ? job : currentJob;
  byId("state").textContent = job.state;
  const percent = job.progress ? job.progress.percent : (job.state === "done" ? 100 : 0);
  if (job.progress || FINAL_STATES.has(job.state)) {
    byId("convert-progress").value = percent;
    byId("convert-percent").textContent = `${Math.floor(percent)} %`;
  }
  const eta = job.state === "converting" && job.progress && job.progress.eta_seconds != null
    ? `about ${formatSeconds(job.progress.eta_seconds)} left` : "";
  byId("eta").textContent = eta;
  byId("cancel").hidden = !(job.state === "uploading" || CANCELLABLE_STATES.has(job.state));
  byId("again").hidden = !(FINAL_STATES.has(job.state));
  const audio = job.state === "done" ? job.audio : null;
  byId("download").hidden = !audio || audio.expired;
  byId("expires").hidden = !audio;
  if (audio) {
    byId("expires").textContent = audio.expired
      ? "This MP3 has expired and was deleted."
      : `The MP3 can be downloaded until ${new Date(audio.expires_at).toLocaleString()}.`;
  }
  const applied = job.applied ? [...(job.applied.forced || [])] : [];
  if (job.applied && job.applied.loudness) {
    applied.push(`loudness ${job.applied.loudness.measured_lufs} LUFS measured, ${job.applied.loudness.gain_db} dB applied`);
  }
  if (job.applied && job.applied.tags) applied.push(`tagged "${job.applied.tags.title}", cover: ${job.applied.tags.cover}`);
  if (job.audio_tracks && job.audio_tracks.length > 1) {
    applied.push(`audio tracks: ${job.audio_tracks.map((t) => `${t.index} ${t.language || ""} ${t.codec}`).join(", ")}`);
  }
  byId("applied").hidden = !applied.length;
  byId("applied").textContent = applied.join(" · ");
  if (FINAL_STATES.has(job.state)) refreshHistory();
  if (job.state === "failed" && job.failure) {
    say("job-message", `The conversion failed: ${job.failure.message}`);
  } else if (job.state === "cancelled") {
    say("job-message", "Cancelled: the video and anything made from it are deleted.", true);
  } else if (FINAL_STATES.has(job.state) || CANCELLABLE_STATES.has(job.state)) {
    say("job-message", "");
  }
}

async function cancel() {
  if (upload) { upload.abort(); return; }
  if (!currentJob) return;
  byId("cancel").disabled = true;
  try {
    showJob(await call("POST", `${api.status_url}/${currentJob.job_id}/cancel`, { headers: authorization() }));
  } catch (error) {
    say("job-message", error.message);
  } finally {
    byId("cancel").disabled = false;
  }
}

function fileNameOf(disposition, fallback) {
  const exact = /filename\*=UTF-8''([^;]+)/i.exec(disposition || "");
  if (exact) return decodeURIComponent(exact[1]);
  const plain = /filename="([^"]+)"/i.exec(disposition || "");
  return plain ? plain[1] : fallback;
}

async function download(jobId, button, messageId) {
  button.disabled = true;
  try {
    const response = await fetch(`${api.download_url}/${jobId}`, { headers: authorization() });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = fileNameOf(response.headers.get("Content-Disposition"), "audio.mp3");
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  } catch (error) {
    say(messageId, `The download failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function again() {
  stopFollowing();
  currentJob = null;
  byId("job").hidden = true;
  byId("convert").hidden = false;
  say("job-message", "");
  say("sending", "");
  byId("file").value = "";
}

// --- Several videos at once, and the history -------------------------------------------------------------------

const UPLOADS_AT_ONCE = 2;      // the rest wait: each upload takes the whole connection's width anyway
const HISTORY_REFRESH_MILLISECONDS = 2000;
const queuedUploads = [];       // {key, file} not started yet
const pendingUploads = new Map();  // key → {name, state, percent, error}: rows before the job exists
let uploadsRunning = 0;
let shownJobs = [];
let historyTimer = null;

// One file follows the job in the big view; several go to the history, one row each.
function startAll(files) {
  if (files.length === 1) { start(files[0]); return; }
  const options = conversionOptions();
  for (const file of files) {
    const key = `${Date.now()}-${Math.random()}`;
    pendingUploads.set(key, { name: file.name, state: "waiting", percent: 0, error: "", words: "" });
    queuedUploads.push({ key, file, options });
  }
  byId("file").value = "";
  pumpUploads();
  renderHistory();
}

function pumpUploads() {
  while (uploadsRunning < UPLOADS_AT_ONCE && queuedUploads.length) {
    const { key, file, options } = queuedUploads.shift();
    const row = pendingUploads.get(key);
    uploadsRunning += 1;
    row.state = "uploading";
    renderHistory();
    sendMedia(file, options, (percent) => { row.percent = percent; renderHistory(); },
              (words) => { row.words = words; renderHistory(); })
      .then(() => pendingUploads.delete(key))
      .catch((error) => {
        row.state = "upload failed";
        row.error = Object.keys(error.fields || {}).length
          ? Object.entries(error.fields).map(([name, problem]) => `${name}: ${problem}`).join("; ") : error.message;
      })
      .finally(() => { uploadsRunning -= 1; pumpUploads(); refreshHistory(); });
  }
}

async function refreshHistory() {
  clearTimeout(historyTimer);
  if (!session().token) return;
  try {
    shownJobs = (await call("GET", `${api.status_url}/`, { headers: authorization() })).jobs;
    say("history-message", "");
  } catch (error) {
    say("history-message", `The list could not be loaded: ${error.message}`);
  }
  renderHistory();
  const moving = pendingUploads.size > 0 || shownJobs.some((job) => !FINAL_STATES.has(job.state));
  if (moving) historyTimer = setTimeout(refreshHistory, HISTORY_REFRESH_MILLISECONDS);
}

function cell(text) {
  const element = document.createElement("td");
  element.textContent = text;
  return element;
}

function actionButton(action, label, secondary = true) {
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.action = action;
  button.textContent = label;
  if (secondary) button.className = "secondary";
  return button;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.jobId = job.job_id;
  const audio = job.state === "done" ? job.audio : null;
  const state = job.state === "converting" && job.progress ? `converting ${Math.floor(job.progress.percent)} %`
    : job.state;
  const actions = document.createElement("td");
  if (audio && !audio.expired) actions.append(actionButton("download", "Download", false));
  if (CANCELLABLE_STATES.has(job.state)) actions.append(actionButton("cancel", "Cancel"));
  actions.append(actionButton("delete", "Delete"));
  row.append(cell(job.filename || job.job_id), cell(state),
             cell(audio ? formatSeconds(audio.duration_seconds) : ""), cell(when(job.created_at)),
             cell(audio ? (audio.expired ? "expired" : when(audio.expires_at)) : ""), actions);
  return row;
}

function uploadRow([key, upload]) {
  const row = document.createElement("tr");
  row.dataset.upload = key;
  const state = upload.state === "uploading" ? `uploading ${Math.floor(upload.percent)} %` : upload.state;
  const stateCell = cell(state);
  if (upload.error) stateCell.title = upload.error;
  const actions = document.createElement("td");
  if (upload.state === "upload failed") actions.append(actionButton("dismiss", "Dismiss"));
  row.append(cell(upload.name), stateCell, cell(""), cell(""), cell(upload.error || upload.words || ""), actions);
  return row;
}

function renderHistory() {
  const rows = [...[...pendingUploads.entries()].map(uploadRow), ...shownJobs.map(jobRow)];
  byId("jobs").tBodies[0].replaceChildren(...rows);
  byId("no-jobs").hidden = rows.length > 0;
}

async function onHistoryAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const row = button.closest("tr");
  const jobId = row.dataset.jobId;
  const name = row.cells[0].textContent;
  try {
    if (button.dataset.action === "dismiss") {
      pendingUploads.delete(row.dataset.upload);
    } else if (button.dataset.action === "download") {
      await download(jobId, button, "history-message");
    } else if (button.dataset.action === "cancel") {
      await call("POST", `${api.status_url}/${jobId}/cancel`, { headers: authorization() });
    } else if (button.dataset.action === "delete") {
      if (!window.confirm(`Delete ${name} and its MP3? This cannot be undone.`)) return;
      await call("DELETE", `${api.status_url}/${jobId}`, { headers: authorization() });
      if (currentJob && currentJob.job_id === jobId) again();
    }
  } catch (error) {
    say("history-message", error.message);
  }
  refreshHistory();
}

// --- Wiring ---------------------------------------------------------------------------------------------------

function wireDropZone() {
  const zone = byId("drop");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer) startAll([...event.dataTransfer.files]);
  });
  byId("file").addEventListener("change", (event) => startAll([...event.target.files]));
  // A file dropped beside the zone must not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

async function main() {
  api = await (await fetch("config.json", { cache: "no-store" })).json();
  byId("account-form").addEventListener("submit", accountAction(logIn));
  byId("signup").addEventListener("click", accountAction(signUp));
  byId("logout").addEventListener("click", () => signOut(""));
  byId("cancel").addEventListener("click", cancel);
  byId("download").addEventListener("click", () => {
    if (currentJob) download(currentJob.job_id, byId("download"), "job-message");
  });
  byId("again").addEventListener("click", again);
  byId("jobs").addEventListener("click", onHistoryAction);
  wireDropZone();
  showSignedIn();
  openLinkedJob();
  window.addEventListener("hashchange", openLinkedJob);  // a link followed while the page is open
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.body.textContent = `vid2mp3 could not start: ${error.message}`;
});
