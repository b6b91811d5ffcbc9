// vid2mp3's web page: sign up or log in, upload a video (only its audio, extracted in the browser by extract.js, or
// the whole file, resumable; with its progress), follow the job live, download
// the MP3, see why a job failed, or cancel it; several videos dropped at once upload one or two at a time; the
// history lists every job of the user with download, cancel and delete. It talks only to the public function URLs named by config.json.
// The access token lives in this tab's sessionStorage and travels only in Authorization headers, never in a URL.
"use strict";

const FINAL_STATES = new Set(["done", "failed", "cancelled"]);
const CANCELLABLE_STATES = new Set(["importing", "uploaded", "converting"]);
const POLL_MILLISECONDS = 1000;
const byId = (id) => document.getElementById(id);

// --- Focus and announcements ------------------------------------------------------------------------------------
// A keyboard or screen-reader user goes on from where an action led: focus is moved on purpose after each action,
// and never left on an element that was hidden or removed (the browser would drop it on the body, the page's top).

function shown(element) {
  return Boolean(element) && element.isConnected && element.checkVisibility();
}

function focusOn(element) {
  if (shown(element)) element.focus();
}

// Where focus was lost (on the body, or on an element now hidden), moves it to the first of `places` shown.
function keepFocus(...places) {
  const active = document.activeElement;
  if (active && active !== document.body && shown(active)) return;
  focusOn(places.find(shown));
}

// Said by screen readers once the current speech ends (role=status): a state, a quarter of progress, the end.
function announce(text) {
  const status = byId("announce");
  if (status.textContent !== text) status.textContent = text;
}

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
  byId("close-account").hidden = !token;
  byId("change-password").hidden = !token;
  byId("api-keys").hidden = !token;
  byId("podcast-feed").hidden = !token;
  if (!token) byId("job").hidden = true;
  if (token) {
    showResumableUploads();
    refreshHistory();
    refreshKeys();
    refreshFeed();
  }
}

function signOut(message) {
  stopFollowing();
  sessionStorage.removeItem("vid2mp3.token");
  sessionStorage.removeItem("vid2mp3.email");
  shownJobs = [];
  renderHistory();
  // The next account to log in in this tab sees nothing of this one's keys, nor the secret shown once.
  byId("new-key").hidden = true;
  byId("new-key-value").value = "";
  renderKeys([]);
  byId("feed-url").value = "";
  showSignedIn();
  say("account-message", message || "", true);
  keepFocus(byId("email"));
}

// tus-js-client keeps each unfinished upload (its URL, the file's name) in localStorage under "tus::": after a
// reload, the page says which can go on, from the bytes the server holds, when the same file is chosen again.
function showResumableUploads() {
  const names = new Set();
  for (let index = 0; index < localStorage.length; index += 1) {
    const key = localStorage.key(index);
    if (!key.startsWith("tus::")) continue;
    try {
      const stored = JSON.parse(localStorage.getItem(key));
      if (stored.metadata && stored.metadata.filename) names.add(stored.metadata.filename);
    } catch { /* not tus-js-client's: nothing to say */ }
  }
  say("resumable", names.size
    ? `Unfinished upload${names.size > 1 ? "s" : ""}: ${[...names].join(", ")}. Choose the same file again and its `
      + "upload goes on where it stopped." : "", true);
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
  // A 401 for a token a password change has since replaced (a request under way meanwhile) ends nothing.
  if (response.status === 401 && headers && headers.Authorization === authorization().Authorization) {
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
  focusOn(byId("choose"));
  openLinkedJob();
}

// The email links to the page with `#job=<job id>`: once signed in, the page shows that job (its state, and the
// MP3 to download while it is kept).
// An altered link (`#job=` and anything but a job id) is told so, as a job that is gone is.
function linkedJobId() {
  const match = /^#job=(.*)$/.exec(window.location.hash);
  if (!match) return null;
  return /^[0-9a-f]{32}$/.test(match[1]) ? match[1] : "";
}

// A link the download function could not serve (links.py sends the browser here): why, in words.
const LINK_PROBLEMS = {
  gone: "The MP3 this link was for is no longer here: it expired, or its job was deleted (or the link was altered).",
  invalid: "This link is not complete or was altered: open it from the email again, or log in to see your jobs.",
};

function showLinkProblem() {
  const match = /^#link=([a-z]+)$/.exec(window.location.hash);
  if (!match) return false;
  history.replaceState(null, "", window.location.pathname);
  showJobProblem("The link from your email", LINK_PROBLEMS[match[1]] || LINK_PROBLEMS.invalid);
  return true;
}

// The job view, with no job: a title and why (a link to a job that is gone, or altered).
function showJobProblem(title, why) {
  stopFollowing();
  currentJob = null;
  byId("job").hidden = false;
  byId("convert").hidden = true;
  byId("job-title").textContent = title;
  showJob({ state: "not found" });
  say("job-message", why);
  focusOn(byId("job-title"));
}

function openLinkedJob() {
  if (showLinkProblem()) return;
  const jobId = linkedJobId();
  if (jobId === null) return;
  if (!session().token) {
    say("account-message", "Log in to see the job you were sent a link to.", true);
    return;
  }
  history.replaceState(null, "", window.location.pathname);  // shown once; a reload starts afresh
  if (!jobId) {
    showJobProblem("The link from your email", LINK_PROBLEMS.invalid);
    return;
  }
  stopFollowing();
  currentJob = null;
  byId("job").hidden = false;
  byId("convert").hidden = true;
  byId("job-title").textContent = "Your job";
  showConversionProgress(0);
  focusOn(byId("job-title"));
  call("GET", `${api.status_url}/${jobId}`, { headers: authorization() })
    .then((job) => {
      byId("job-title").textContent = job.filename || "Your job";
      showJob(job);
      if (!FINAL_STATES.has(job.state)) follow(jobId);
    })
    .catch((error) => {
      showJobProblem("The link from your email", error.status === 404
        ? "No such job of yours: it may have been deleted, or the link was altered." : error.message);
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
    if (form.getAttribute("aria-busy") === "true") return;
    // Busy, not disabled: a disabled button would drop the keyboard's focus on the body.
    form.setAttribute("aria-busy", "true");
    try {
      await action(email, password);
      byId("password").value = "";
    } catch (error) {
      say("account-message", error.message);
    } finally {
      form.setAttribute("aria-busy", "false");
    }
  };
}

// A form of the account area sent: checked, busy while `action` runs (busy, not disabled: a disabled button would drop
// the keyboard's focus on the body), a refusal said in `messageId` in the server's words, then `onRefused`.
function accountForm(formId, messageId, action, onRefused = () => {}) {
  return async (event) => {
    event.preventDefault();
    const form = byId(formId);
    if (!form.reportValidity() || form.getAttribute("aria-busy") === "true") return;
    form.setAttribute("aria-busy", "true");
    try {
      await action(form);
    } catch (error) {
      say(messageId, error.message);
      onRefused();
    } finally {
      form.setAttribute("aria-busy", "false");
    }
  };
}

// Deleting the account (auth's DELETE /account) asks for its password and a tick that says yes, in a form.
const closeAccount = accountForm("close-account-form", "close-account-message", async (form) => {
  say("close-account-message", "Deleting your account and its jobs…", true);
  await call("DELETE", `${api.auth_url}/account`, {
    json: { password: byId("close-password").value }, headers: authorization() });
  form.reset();
  say("close-account-message", "");
  signOut("Your account is deleted, with all its jobs and their MP3s.");
  focusOn(byId("account-title"));
}, () => focusOn(byId("close-password")));

// Auth's POST /account/password answers a token of the new password: this tab goes on with it, while every token,
// key and link from before stops.
const changePassword = accountForm("change-password-form", "change-password-message", async (form) => {
  say("change-password-message", "Changing your password…", true);
  const answer = await call("POST", `${api.auth_url}/account/password`, {
    json: { password: byId("current-password").value, new_password: byId("new-password").value },
    headers: authorization() });
  sessionStorage.setItem("vid2mp3.token", answer.access_token);
  form.reset();
  say("change-password-message", "Your password is changed. Other sessions, your API keys, your podcast feed's "
    + "address and the links emailed before no longer work; this page goes on.", true);
  refreshKeys();
  refreshFeed();
}, () => focusOn(byId("current-password")));

// --- API keys (auth's /keys) ----------------------------------------------------------------------------------

let keysAsked = 0;  // the last list asked for: an older answer arriving late is not shown

async function refreshKeys() {
  const asked = ++keysAsked;
  try {
    const { keys } = await call("GET", `${api.auth_url}/keys`, { headers: authorization() });
    if (asked === keysAsked) renderKeys(keys);
  } catch (error) {
    if (asked === keysAsked) say("key-message", `The keys could not be loaded: ${error.message}`);
  }
}

function keyWords(key) {
  return `${key.name}: ${key.scopes.join(", ")}; created ${when(key.created_at)}; `
    + `last used ${key.last_used_at ? when(key.last_used_at) : "never"}; `
    + (key.expires_at ? `expires ${when(key.expires_at)}` : "never expires");
}

// The list is redrawn: focus on a Revoke button (its key revoked) moves to the section's title, not the page's top.
function renderKeys(keys) {
  const items = keys.map((key) => {
    const item = document.createElement("li");
    item.dataset.keyId = key.id;
    const revoke = actionButton("revoke", key.name);
    revoke.dataset.keyName = key.name;
    item.append(keyWords(key), revoke);
    return item;
  });
  const hadFocus = byId("keys").contains(document.activeElement);
  byId("keys").replaceChildren(...items);
  byId("no-keys").hidden = keys.length > 0;
  if (hadFocus) focusOn(byId("api-keys-title"));
}

const createKey = accountForm("key-form", "key-message", async (form) => {
  const scopes = [...form.querySelectorAll("input[name=scope]:checked")].map((box) => box.value);
  if (!scopes.length) {
    say("key-message", "Tick at least one scope: what the key may do.");
    focusOn(form.querySelector("input[name=scope]"));
    return;
  }
  const days = byId("key-days").value;
  const created = await call("POST", `${api.auth_url}/keys`, { headers: authorization(), json: {
    name: byId("key-name").value.trim(), scopes, expires_in_days: days ? Number(days) : null } });
  form.reset();
  say("key-message", `The key ${created.name} is made.`, true);
  byId("new-key").hidden = false;
  byId("new-key-value").value = created.key;
  byId("copy-status").textContent = "";
  focusOn(byId("new-key-value"));
  byId("new-key-value").select();
  refreshKeys();
});

// A secret shown in a read-only field (a new key, the feed's address) to the clipboard, or selected to copy by hand.
async function copyField(fieldId, statusId, what) {
  const field = byId(fieldId);
  try {
    await navigator.clipboard.writeText(field.value);
    byId(statusId).textContent = "Copied";
  } catch {
    // No clipboard here (a browser's setting, or a page not served over https): the text is selected to copy by hand.
    field.focus();
    field.select();
    byId(statusId).textContent = `Copy it by hand: the ${what} is selected.`;
  }
}

// --- The private podcast feed (download's /feed) -----------------------------------------------------------------

async function refreshFeed() {
  try {
    showFeed(await call("GET", `${api.download_url}/feed`, { headers: authorization() }));
  } catch (error) {
    say("feed-message", `The feed's address could not be loaded: ${error.message}`);
  }
}

function showFeed(feed) {
  byId("feed-url").value = feed.url;
  byId("feed-copy-status").textContent = "";
}

async function rotateFeed() {
  if (!window.confirm("Make a new feed address? The podcast apps given the old one stop getting your MP3s until "
    + "you give them the new one.")) return;
  try {
    await whileBusy(byId("rotate-feed"), async () => {
      showFeed(await call("POST", `${api.download_url}/feed/rotate`, { headers: authorization() }));
      say("feed-message", "Your feed has a new address: the old one no longer works.", true);
      focusOn(byId("feed-url"));
    });
  } catch (error) {
    say("feed-message", error.message);
  }
}

async function revokeKey(event) {
  const button = event.target.closest("button[data-action=revoke]");
  if (!button) return;
  const name = button.dataset.keyName;
  if (!window.confirm(`Revoke the key ${name}? Scripts using it stop working.`)) return;
  try {
    await whileBusy(button, () => call("DELETE", `${api.auth_url}/keys/${button.closest("li").dataset.keyId}`, {
      headers: authorization() }));
    say("key-message", `The key ${name} is revoked.`, true);
    // The key shown once, if it is this one, goes with it.
    if (byId("new-key-value").value.startsWith(`v2m_${button.closest("li").dataset.keyId}`)) {
      byId("new-key").hidden = true;
      byId("new-key-value").value = "";
    }
  } catch (error) {
    say("key-message", error.message);
  }
  await refreshKeys();
}

// --- Upload ---------------------------------------------------------------------------------------------------

function showUploadProgress(percent) {
  byId("upload-progress").value = percent;
  byId("upload-percent").textContent = `${Math.floor(percent)} %`;
  if (percent < 100) announceQuarter("Upload", percent);
}

function showConversionProgress(percent) {
  byId("convert-progress").value = percent;
  byId("convert-percent").textContent = `${Math.floor(percent)} %`;
}

// Progress is announced by quarters, not at every tick: enough to know it moves, not so much it drowns the rest.
let announcedQuarter = "";
function announceQuarter(what, percent) {
  const quarter = `${what} ${25 * Math.floor(percent / 25)} %`;
  if (percent >= 25 && quarter !== announcedQuarter) {
    announcedQuarter = quarter;
    announce(quarter);
  }
}

// The conversion options as the upload function's fields (README: Conversion options): the quality, and every
// field of the options panel that is filled in.
function conversionOptions() {
  const fields = { quality: byId("quality").value };
  for (const input of byId("options").querySelectorAll("input, select")) {
    // The server refuses the silence fields without trim_silence: with it unticked they are hidden and not sent.
    if (byId("silence-fields").contains(input) && !byId("option-trim-silence").checked) continue;
    const value = input.type === "checkbox" ? (input.checked ? input.value : "") : input.value.trim();
    if (value) fields[input.name] = value;
  }
  return fields;
}

// Each video starts from the defaults, unless "Keep these options" is ticked: options never carry over unseen.
function resetOptions() {
  if (byId("keep-options").checked) return;
  for (const input of byId("convert").querySelectorAll("input[name], select[name]")) {
    if (input.type === "checkbox") input.checked = input.defaultChecked;
    else if (input.tagName === "SELECT") for (const option of input.options) option.selected = option.defaultSelected;
    else input.value = input.defaultValue;
  }
  showSilenceFields();
}

// The silence fields only mean something with trim_silence: shown (and sent) only with it ticked.
function showSilenceFields() {
  byId("silence-fields").hidden = !byId("option-trim-silence").checked;
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

function start(file) {
  if (!file) return;
  startJob(file.name, "uploading", (options) => sendMedia(
    file, options, showUploadProgress, (words) => say("sending", words, true), (request) => { upload = request; }));
}

// The server checks the URL and begins the fetch (upload's `{"url": ...}`) before it answers with the job: the view
// says "fetching" until then, with no Cancel; then the job is "importing" (the fetch in the upload bar, Cancel
// stops it) and converts. A URL refused goes back to the form with why.
function startFromUrl(event) {
  event.preventDefault();
  const form = byId("url-form");
  if (!form.reportValidity()) return;
  const url = byId("video-url").value.trim();
  say("url-message", "");
  const name = new URL(url).pathname.split("/").pop() || url;
  startJob(name, "fetching", async (options) => {
    say("sending", "The server is fetching the video from its URL…", true);
    const accepted = await call("POST", api.upload_url, { json: { url, ...options }, headers: authorization() });
    byId("video-url").value = "";
    return accepted;
  }, byId("video-url"));
}

// Bad options, or a URL refused: back to the form, the field marked and why said; nothing was stored.
function backToForm(fields, focusTarget) {
  byId("job").hidden = true;
  byId("convert").hidden = false;
  showOptionErrors(fields);
  focusOn(byId("convert").querySelector("[aria-invalid=true]") || focusTarget);
}

// The job view of a video being sent (`send(options)` resolves with the accepted job), then its job followed.
// `urlField` is the URL field of an import: a refusal of the URL is said beside it.
async function startJob(name, firstState, send, urlField = null) {
  stopFollowing();
  currentJob = null;
  announcedQuarter = "";
  byId("job").hidden = false;
  byId("convert").hidden = true;
  byId("job-title").textContent = name;
  // A new video starts from nothing: no bar, state or message of the one before.
  showUploadProgress(0);
  showConversionProgress(0);
  say("job-message", "");
  showJob({ state: firstState });
  focusOn(byId("job-title"));
  announce(`${firstState === "fetching" ? "Fetching" : "Uploading"} ${name}`);
  say("sending", "", true);
  let accepted;
  showOptionErrors({});
  try {
    accepted = await send(conversionOptions());
  } catch (error) {
    upload = null;
    if (!session().token) return;  // the session ended (a 401): the page asks to log in
    if (error.status === 422 && Object.keys(error.fields).length) {
      backToForm(error.fields, byId("choose"));
      return;
    }
    if (urlField && error.status) {
      backToForm({}, urlField);
      say("url-message", `The video was not imported: ${error.message}`);
      return;
    }
    showJob({ state: error.aborted ? "cancelled" : "upload failed" });
    say("job-message", error.aborted ? "Upload cancelled: nothing was stored." : `The upload failed: ${error.message}`);
    keepFocus(byId("again"));
    return;
  }
  upload = null;
  resetOptions();
  showResumableUploads();
  showUploadProgress(100);
  showJob({ job_id: accepted.job_id, filename: accepted.filename || name, state: accepted.state || "uploaded" });
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

// What the job view says of a job that has an id: its upload is over, its conversion where the job says.
function showJobProgress(job) {
  // No job came of a refused or cancelled upload, nor of a link to a job that is gone: no bars to show.
  const noJob = !job.job_id && job.state !== "uploading";
  byId("upload-bar").hidden = noJob;
  byId("convert-bar").hidden = noJob;
  if (!job.job_id) return;
  if (job.state === "importing") {  // the server's fetch is this job's upload
    showUploadProgress(job.progress ? job.progress.percent : 0);
    showConversionProgress(0);
    return;
  }
  showUploadProgress(100);
  if (job.progress) showConversionProgress(job.progress.percent);
  else if (job.state === "done") showConversionProgress(100);
}

// Tells a screen reader the job's state when it changes, the conversion by quarters, and the end in words.
function announceJob(job, before) {
  const name = job.filename || byId("job-title").textContent;
  if (job.state === "converting" && job.progress) announceQuarter("Conversion", job.progress.percent);
  if (before && before.state === job.state) return;
  if (job.state === "done") announce(`${name} is converted: the MP3 is ready to download.`);
  else if (job.state === "failed") announce(`The conversion of ${name} failed${job.failure ? `: ${job.failure.message}` : ""}.`);
  else if (job.state !== "uploading") announce(`${name}: ${job.state}`);
}

function showJob(job) {
  const before = currentJob;
  if (job.job_id && !job.filename && before && before.job_id === job.job_id) job = { ...job, filename: before.filename };
  currentJob = job.job_id ? job : currentJob;
  byId("state").textContent = job.state;
  showJobProgress(job);
  announceJob(job, before);
  const eta = job.state === "converting" && job.progress && job.progress.eta_seconds != null
    ? `about ${formatSeconds(job.progress.eta_seconds)} left` : "";
  byId("eta").textContent = eta;
  byId("cancel").hidden = !(job.state === "uploading" || CANCELLABLE_STATES.has(job.state));
  byId("again").hidden = !session().token
    || !(FINAL_STATES.has(job.state) || job.state === "upload failed" || job.state === "not found");
  const audio = job.state === "done" ? job.audio : null;
  byId("download").hidden = !audio || audio.expired;
  // At the job's end, focus in the job view (on Cancel, which goes, or its title) moves to what comes next: the MP3,
  // or another video. Focus elsewhere (the list, the options) stays where the user left it.
  const ended = FINAL_STATES.has(job.state) && !(before && before.job_id === job.job_id && before.state === job.state);
  if (ended && byId("job").contains(document.activeElement)) focusOn(byId("download"));
  keepFocus(byId("download"), byId("again"), byId("job-title"));
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
  showChapters(job.chapters && audio && !audio.expired ? job.chapters : [], audio);
  showChapterFiles(audio && !audio.expired ? audio.chapter_files || [] : [], audio);
  if (job.job_id) renderHistory();  // the list's row says what the view says, at once
  if (FINAL_STATES.has(job.state)) refreshHistory();
  if (job.state === "failed" && job.failure) {
    say("job-message", `The conversion failed: ${job.failure.message}`);
  } else if (job.state === "cancelled") {
    say("job-message", "Cancelled: the video and anything made from it are deleted.", true);
  } else if (FINAL_STATES.has(job.state) || CANCELLABLE_STATES.has(job.state)) {
    say("job-message", "");
  }
}

// The MP3's chapter markers, each with its start on the MP3's timeline, and the JSON chapters document's link.
function showChapters(chapters, audio) {
  byId("chapters").hidden = !chapters.length;
  byId("chapter-list").replaceChildren(...chapters.map((chapter) => {
    const item = document.createElement("li");
    item.textContent = `${chapter.title} (from ${formatSeconds(chapter.start_seconds)})`;
    return item;
  }));
  const link = audio && audio.chapters_link;
  byId("chapters-link").hidden = !link;
  if (link) byId("chapters-link").href = link;
}

// The chapter files (split=chapters), each a download by its signed link, and all of them as one ZIP.
function showChapterFiles(files, audio) {
  byId("chapter-files").hidden = !files.length;
  byId("chapter-file-list").replaceChildren(...files.map((file) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = file.download_link || "";
    link.textContent = `${file.title} (${formatSeconds(file.duration_seconds)})`;
    item.append(link);
    return item;
  }));
  const zip = audio && audio.chapter_files_zip_link;
  byId("chapter-files-zip").hidden = !zip;
  if (zip) byId("chapter-files-zip").href = zip;
}

// Buttons stay enabled while their action runs (a disabled button drops the keyboard's focus on the body): busy
// ones say so and ignore presses until it ends.
async function whileBusy(button, action) {
  if (button.getAttribute("aria-disabled") === "true") return;
  button.setAttribute("aria-disabled", "true");
  try {
    await action();
  } finally {
    button.removeAttribute("aria-disabled");
  }
}

async function cancel() {
  if (upload) { upload.abort(); return; }
  if (!currentJob) return;
  await whileBusy(byId("cancel"), async () => {
    try {
      showJob(await call("POST", `${api.status_url}/${currentJob.job_id}/cancel`, { headers: authorization() }));
    } catch (error) {
      say("job-message", error.message);
    }
  });
}

function fileNameOf(disposition, fallback) {
  const exact = /filename\*=UTF-8''([^;]+)/i.exec(disposition || "");
  if (exact) return decodeURIComponent(exact[1]);
  const plain = /filename="([^"]+)"/i.exec(disposition || "");
  return plain ? plain[1] : fallback;
}

async function download(jobId, button, messageId) {
  await whileBusy(button, () => save(`${api.download_url}/${jobId}`, "audio.mp3", messageId));
}

// Fetches what the download function serves (with the token) and saves it under the name it gives.
async function save(url, fallbackName, messageId) {
  try {
    const response = await fetch(url, { headers: authorization() });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = fileNameOf(response.headers.get("Content-Disposition"), fallbackName);
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  } catch (error) {
    say(messageId, `The download failed: ${error.message}`);
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
  focusOn(byId("choose"));
}

// --- Several videos at once, and the history -------------------------------------------------------------------

const UPLOADS_AT_ONCE = 2;      // the rest wait: each upload takes the whole connection's width anyway
const HISTORY_REFRESH_MILLISECONDS = 2000;
const queuedUploads = [];       // {key, file, options} not started yet
const pendingUploads = new Map();  // key → {name, state, percent, error, words, request}: rows before the job exists
let uploadsRunning = 0;
let shownJobs = [];
const selectedJobs = new Set();  // the job ids ticked for the ZIP of several
let historyTimer = null;
let historyAsked = 0;           // the last list asked for: an older answer arriving late is not shown
let listUnloaded = false;       // the list message says the list could not be loaded

// One file follows the job in the big view; several go to the history, one row each.
function startAll(files) {
  if (files.length === 1) { start(files[0]); return; }
  if (!files.length) return;
  const options = conversionOptions();
  for (const file of files) {
    const key = `${Date.now()}-${Math.random()}`;
    pendingUploads.set(key, { name: file.name, state: "waiting", percent: 0, error: "", words: "", request: null });
    queuedUploads.push({ key, file, options });
  }
  resetOptions();
  announce(`${files.length} videos added to your jobs`);
  pumpUploads();
  renderHistory();
  focusOn(byId("history-title"));
}

function uploadFailure(error) {
  return Object.keys(error.fields || {}).length
    ? Object.entries(error.fields).map(([name, problem]) => `${name}: ${problem}`).join("; ") : error.message;
}

function pumpUploads() {
  while (uploadsRunning < UPLOADS_AT_ONCE && queuedUploads.length) {
    const { key, file, options } = queuedUploads.shift();
    const row = pendingUploads.get(key);
    uploadsRunning += 1;
    row.state = "uploading";
    renderHistory();
    sendMedia(file, options, (percent) => { row.percent = percent; renderHistory(); },
              (words) => { row.words = words; renderHistory(); }, (request) => { row.request = request; })
      .then(() => pendingUploads.delete(key))
      .catch((error) => {
        if (error.aborted) {
          pendingUploads.delete(key);
          return;
        }
        row.state = "upload failed";
        row.error = uploadFailure(error);
      })
      .finally(() => { uploadsRunning -= 1; pumpUploads(); refreshHistory(); });
  }
}

// A row of the list that has not become a job yet: waiting its turn (taken out of the queue) or uploading (its
// upload terminated, its bytes gone).
function cancelPendingUpload(key) {
  const row = pendingUploads.get(key);
  if (!row) return;
  const queued = queuedUploads.findIndex((entry) => entry.key === key);
  if (queued >= 0) {
    queuedUploads.splice(queued, 1);
    pendingUploads.delete(key);
  } else if (row.request) {
    row.request.abort();
  }
  say("history-message", `The upload of ${row.name} is cancelled: nothing was stored.`, true);
}

async function refreshHistory() {
  clearTimeout(historyTimer);
  if (!session().token) return;
  const asked = ++historyAsked;
  try {
    const jobs = (await call("GET", `${api.status_url}/`, { headers: authorization() })).jobs;
    if (asked !== historyAsked) return;
    shownJobs = jobs;
    // Only its own complaint goes: what an action in the list said (deleted, cancelled) stays.
    if (listUnloaded) say("history-message", "");
    listUnloaded = false;
  } catch (error) {
    if (asked !== historyAsked) return;
    say("history-message", `The list could not be loaded: ${error.message}`);
    listUnloaded = true;
  }
  renderHistory();
  const moving = pendingUploads.size > 0 || shownJobs.some((job) => !FINAL_STATES.has(job.state));
  if (moving) historyTimer = setTimeout(refreshHistory, HISTORY_REFRESH_MILLISECONDS);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

const COLUMNS = ["Video", "State", "Length", "Uploaded", "Kept until", ""];

// What a job's row shows: its cells' words and its buttons' actions. The job view's copy of the job it follows is
// the newer (its event stream): the list says what the view says.
function jobRowContent(listed) {
  const job = currentJob && currentJob.job_id === listed.job_id && currentJob.updated_at >= listed.updated_at
    ? { ...listed, ...currentJob } : listed;
  const audio = job.state === "done" ? job.audio : null;
  let state = job.state;
  if (["importing", "converting"].includes(job.state) && job.progress) {
    state = `${job.state} ${Math.floor(job.progress.percent)} %`;
  }
  if (job.state === "failed" && job.failure) state = `failed: ${job.failure.message}`;
  const actions = [];
  if (audio && !audio.expired) actions.push("select", "download");
  if (CANCELLABLE_STATES.has(job.state)) actions.push("cancel");
  actions.push("delete");
  return {
    key: `job-${job.job_id}`, data: { jobId: job.job_id }, name: job.filename || job.job_id, actions,
    cells: [job.filename || job.job_id, state, audio ? formatSeconds(audio.duration_seconds) : "",
            when(job.created_at), audio ? (audio.expired ? "expired" : when(audio.expires_at)) : ""],
  };
}

function uploadRowContent([key, upload]) {
  const state = upload.state === "uploading" ? `uploading ${Math.floor(upload.percent)} %`
    : upload.state === "upload failed" ? `upload failed: ${upload.error}` : upload.state;
  return {
    key: `upload-${key}`, data: { upload: key }, name: upload.name, cells: [upload.name, state, "", "", upload.words],
    actions: upload.state === "upload failed" ? ["dismiss"] : ["cancel"],
  };
}

const ACTION_WORDS = { download: "Download", cancel: "Cancel", delete: "Delete", dismiss: "Dismiss", revoke: "Revoke" };

function actionButton(action, name) {
  if (action === "select") return selectBox(name);
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.action = action;
  button.textContent = ACTION_WORDS[action];
  // Heard as "Download talk.mp4": which row's button it is, without reading the row.
  button.setAttribute("aria-label", `${ACTION_WORDS[action]} ${name}`);
  if (action !== "download") button.className = "secondary";
  return button;
}

// A finished job's box for the ZIP of several, heard as "Select talk.mp4"; ticked again if the row is redrawn.
function selectBox(name) {
  const label = document.createElement("label");
  label.className = "select";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.dataset.action = "select";
  box.setAttribute("aria-label", `Select ${name}`);
  label.append(box, "Select");
  return label;
}

function newRow() {
  const row = document.createElement("tr");
  COLUMNS.forEach((column, index) => {
    const cell = document.createElement("td");
    if (column) cell.dataset.label = column;  // the card's words for it on a phone (style.css)
    cell.className = ["name", "state", "length", "uploaded", "kept", "actions"][index];
    row.append(cell);
  });
  return row;
}

// Updates a row in place: only the words that changed, the buttons only when the actions do; a button that stays
// keeps its focus.
function updateRow(row, content) {
  Object.assign(row.dataset, content.data, { key: content.key });
  content.cells.forEach((text, index) => {
    if (row.cells[index].textContent !== text) row.cells[index].textContent = text;
  });
  const signature = `${content.actions.join()}|${content.name}`;
  if (row.dataset.actions === signature) return;
  row.dataset.actions = signature;
  const actions = row.cells[5];
  const focused = actions.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  actions.replaceChildren(...content.actions.map((action) => actionButton(action, content.name)));
  const box = actions.querySelector("[data-action=select]");
  if (box) box.checked = selectedJobs.has(content.data.jobId);
  if (focused) focusOn(actions.querySelector(`[data-action=${focused}]`) || actions.querySelector("button"));
}

// The list, updated row by row (never redrawn: a redraw under the focus would drop it on the body). A row that goes
// with the focus in it hands the focus to the row that takes its place, or the list's title.
function renderHistory() {
  const body = byId("jobs").tBodies[0];
  const contents = [...[...pendingUploads.entries()].map(uploadRowContent), ...shownJobs.map(jobRowContent)];
  const wanted = new Set(contents.map((content) => content.key));
  const rows = [...body.rows];
  const focusedRow = rows.find((row) => row.contains(document.activeElement));
  let successor = null;
  for (const row of rows) {
    if (wanted.has(row.dataset.key)) continue;
    if (row === focusedRow) successor = row.nextElementSibling || row.previousElementSibling;
    row.remove();
  }
  const existing = new Map([...body.rows].map((row) => [row.dataset.key, row]));
  contents.forEach((content, index) => {
    const row = existing.get(content.key) || newRow();
    if (body.rows[index] !== row) {
      const active = row.contains(document.activeElement) ? document.activeElement : null;
      body.insertBefore(row, body.rows[index] || null);
      if (active) active.focus();
    }
    updateRow(row, content);
  });
  byId("no-jobs").hidden = contents.length > 0;
  // Only the jobs still listed with an MP3 stay selected; the ZIP button is there when there is something to zip.
  const zippable = new Set(contents.filter((content) => content.actions.includes("select")).map((c) => c.data.jobId));
  for (const jobId of selectedJobs) if (!zippable.has(jobId)) selectedJobs.delete(jobId);
  byId("download-zip").hidden = zippable.size === 0;
  if (focusedRow && !focusedRow.isConnected) {
    focusOn((successor && successor.isConnected && successor.querySelector("button")) || byId("history-title"));
  }
}

function onSelect(event) {
  const box = event.target.closest("input[data-action=select]");
  if (!box) return;
  const jobId = box.closest("tr").dataset.jobId;
  if (box.checked) selectedJobs.add(jobId);
  else selectedJobs.delete(jobId);
}

async function downloadSelected() {
  if (!selectedJobs.size) {
    say("history-message", "Select the finished jobs to download first.");
    return;
  }
  say("history-message", "");
  const jobs = [...selectedJobs].map(encodeURIComponent).join(",");
  await whileBusy(byId("download-zip"),
    () => save(`${api.download_url}/zip?jobs=${jobs}`, "vid2mp3-mp3s.zip", "history-message"));
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
    } else if (button.dataset.action === "cancel" && row.dataset.upload) {
      cancelPendingUpload(row.dataset.upload);
    } else if (button.dataset.action === "cancel") {
      await whileBusy(button, () => call("POST", `${api.status_url}/${jobId}/cancel`, { headers: authorization() }));
      say("history-message", `${name} is cancelled.`, true);
    } else if (button.dataset.action === "delete") {
      if (!window.confirm(`Delete ${name} and its MP3? This cannot be undone.`)) return;
      await whileBusy(button, () => call("DELETE", `${api.status_url}/${jobId}`, { headers: authorization() }));
      shownJobs = shownJobs.filter((job) => job.job_id !== jobId);
      say("history-message", `${name} is deleted.`, true);
      if (currentJob && currentJob.job_id === jobId) again();
    }
  } catch (error) {
    say("history-message", error.message);
  }
  renderHistory();
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
  // The one control for choosing: a button (Tab, Enter, Space) that opens the hidden file input's chooser.
  byId("choose").addEventListener("click", () => byId("file").click());
  byId("file").addEventListener("change", (event) => {
    const files = [...event.target.files];
    // Emptied at once: the same file chosen again (after fixing an option) is a change again.
    event.target.value = "";
    startAll(files);
  });
  // A file dropped beside the zone must not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

async function main() {
  api = await (await fetch("config.json", { cache: "no-store" })).json();
  byId("account-form").addEventListener("submit", accountAction(logIn));
  byId("signup").addEventListener("click", accountAction(signUp));
  byId("logout").addEventListener("click", () => signOut(""));
  byId("close-account-form").addEventListener("submit", closeAccount);
  byId("change-password-form").addEventListener("submit", changePassword);
  byId("key-form").addEventListener("submit", createKey);
  byId("copy-key").addEventListener("click", () => copyField("new-key-value", "copy-status", "key"));
  byId("copy-feed").addEventListener("click", () => copyField("feed-url", "feed-copy-status", "address"));
  byId("rotate-feed").addEventListener("click", rotateFeed);
  byId("keys").addEventListener("click", revokeKey);
  byId("url-form").addEventListener("submit", startFromUrl);
  byId("cancel").addEventListener("click", cancel);
  byId("download").addEventListener("click", () => {
    if (currentJob) download(currentJob.job_id, byId("download"), "job-message");
  });
  byId("again").addEventListener("click", again);
  byId("jobs").addEventListener("click", onHistoryAction);
  byId("jobs").addEventListener("change", onSelect);
  byId("download-zip").addEventListener("click", downloadSelected);
  byId("option-trim-silence").addEventListener("change", showSilenceFields);
  wireDropZone();
  showSignedIn();
  openLinkedJob();
  window.addEventListener("hashchange", openLinkedJob);  // a link followed while the page is open
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.body.textContent = `vid2mp3 could not start: ${error.message}`;
});
