// The page's extraction: a video file chosen in the page in, what vid2mp3 needs of it out, made in this browser so
// that only that is uploaded (on a real video 1-3 % of its bytes): every audio track copied, never decoded, by
// mediabunny (served from this origin as mediabunny.min.mjs), into an .m4a (an MP4 or MOV whose audio codecs MP4
// carries as they are) or an .mka (anything else), with the tags mediabunny keeps; the frame at 10 % of the video,
// drawn from a <video> onto a canvas (a JPEG, the `cover` part); the chapters the page can read (mediabunny reads
// none: this module reads Matroska's Chapters element and MP4's Nero `chpl` box itself), as the `chapters` part.
// Where it cannot (a container mediabunny does not read, a codec it cannot copy, an error), NotExtracted says why
// and the page sends the whole file. app.js imports this module once a file is chosen, so the first load stays small.
import {
  BlobSource, BufferTarget, Conversion, Input, MATROSKA, MkvOutputFormat, MP4, Mp4OutputFormat, Output, QTFF, WEBM,
} from "./mediabunny.min.mjs";

// The rule the server and the command share (client/vid2mp3_client/extract.py): an MP4/MOV whose audio codecs MP4
// carries as they are stays MP4, whose edit list keeps AAC's encoder priming (Matroska loses it: the audio would
// start 21 ms late). Anything else goes into Matroska, which carries every codec. mediabunny's names for the codecs.
const MP4_AUDIO_CODECS = new Set(["aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"]);

// The cover frame, as the server takes it from a whole video: at 10 % of its duration, at most 600 px on its longer
// side, as a JPEG (the server accepts at most 512 KiB: a 600 px JPEG is some 30-80 KiB).
const FRAME_AT = 0.10;
const FRAME_MAX_SIDE = 600;
const FRAME_QUALITY = 0.9;
// A <video> that cannot show its frame in this time (a codec the browser lacks, a stalled decoder) gives no cover;
// the server then uses the attached picture, if any.
const FRAME_TIMEOUT_MILLISECONDS = 15000;

// The server's limits on the `chapters` part (api/limits.py): past them the chapters are left out, never refused.
const MAX_CHAPTERS = 1000;
const MAX_CHAPTERS_BYTES = 64 * 1024;
// Of a Matroska file, the elements before its first cluster are read to find its title and chapters; past this many
// bytes of them (a file holding huge attachments) the page gives up on them.
const MATROSKA_HEAD_BYTES = 16 * 1024 * 1024;

export class NotExtracted extends Error {}

export function megabytes(count) {
  if (count >= 1e7) return `${(count / 1e6).toFixed(0)} MB`;
  return count >= 1e6 ? `${(count / 1e6).toFixed(1)} MB` : `${(count / 1e3).toFixed(0)} kB`;
}

// What the page uploads for one video: the extract (a File named after the video, so the job keeps its name), the
// cover frame and the chapters when it has them, and what it says about them, in words.
export async function extract(video, onProgress = () => {}) {
  const input = new Input({ source: new BlobSource(video), formats: [MP4, QTFF, MATROSKA, WEBM] });
  let made;
  try {
    made = await copyAudio(video, input, onProgress);
  } catch (error) {
    if (error instanceof NotExtracted) throw error;
    throw new NotExtracted(`the page cannot read it (${error.message || error})`);
  } finally {
    input.dispose();
  }
  const frame = await coverFrame(video).then((blob) => ({ blob }), (error) => ({ problem: error.message }));
  const notes = [];
  if (!frame.blob) notes.push(`no cover frame: ${frame.problem}`);
  if (made.chaptersNote) notes.push(made.chaptersNote);
  const sent = made.file.size + (frame.blob ? frame.blob.size : 0);
  return {
    file: made.file,
    name: video.name,
    cover: frame.blob || null,
    chapters: made.chapters,
    words: [`Sending only the audio: ${megabytes(sent)} of ${megabytes(video.size)}`, ...notes].join("; "),
  };
}

async function copyAudio(video, input, onProgress) {
  const format = await input.getFormat().catch(() => null);
  if (!format) throw new NotExtracted("the page reads only MP4, MOV, WebM and Matroska files");
  const audio = await input.getAudioTracks();
  if (!audio.length) throw new NotExtracted("it has no audio track");
  if (!(await input.getVideoTracks()).length) throw new NotExtracted("it holds only audio already");
  const mp4Family = format === MP4 || format === QTFF;
  const m4a = new Mp4OutputFormat({ fastStart: "in-memory" });
  const asMp4 = mp4Family && audio.every((track) => MP4_AUDIO_CODECS.has(track.codec)
                                                    && m4a.getSupportedAudioCodecs().includes(track.codec));
  const matroska = mp4Family ? null : await readMatroskaHead(video).catch(() => null);
  let chapters = matroska ? matroska.chapters : null;
  const output = new Output({ format: asMp4 ? m4a : new MkvOutputFormat(), target: new BufferTarget() });
  const conversion = await Conversion.init({
    input, output, video: { discard: true }, copy: { mode: "forced" }, showWarnings: false,
    tags: (tags) => {
      const raw = { ...(tags.raw || {}) };
      // MP4's Nero chapters, copied raw, would read as nonsense in the extract; they go as the chapters part.
      if (raw.chpl instanceof Uint8Array) chapters = neroChapters(raw.chpl);
      delete raw.chpl;
      // mediabunny does not read a Matroska segment's title (the video's title, as ffmpeg writes it).
      const title = tags.title || (matroska && matroska.title) || undefined;
      return { ...tags, raw, ...(title ? { title } : {}) };
    },
  });
  const dropped = conversion.discardedTracks.filter((discarded) => discarded.track.type === "audio");
  if (!conversion.isValid || dropped.length) {
    const why = dropped.map((discarded) => `${discarded.track.codec || "unknown codec"}: ${discarded.reason}`);
    throw new NotExtracted(`the page cannot copy its audio (${why.join(", ") || "no track to copy"})`);
  }
  conversion.onProgress = (progress) => onProgress(100 * progress);
  await conversion.execute();
  const bytes = new Uint8Array(output.target.buffer);
  if (!asMp4) plainMatroskaTags(bytes);
  const name = video.name.replace(/\.[^.]*$/, "") + (asMp4 ? ".m4a" : ".mka");
  const file = new File([bytes], name, { type: asMp4 ? "audio/mp4" : "audio/x-matroska" });
  const sized = chapters && chapters.length ? fitChapters(chapters) : null;
  let chaptersNote = null;
  if (chapters && chapters.length && !sized) chaptersNote = "its chapters are too many to send";
  if (!chapters && !mp4Family && !matroska) chaptersNote = "its chapters could not be read";
  return { file, chapters: sized, chaptersNote };
}

function fitChapters(chapters) {
  const kept = chapters.slice(0, MAX_CHAPTERS);
  const text = JSON.stringify(kept);
  return new TextEncoder().encode(text).length <= MAX_CHAPTERS_BYTES ? kept : null;
}

// --- The cover frame ----------------------------------------------------------------------------------------------

function waitFor(element, name, milliseconds) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { done(); reject(new Error("the browser did not show its picture in time")); },
                             milliseconds);
    const onEvent = () => { done(); resolve(); };
    const onError = () => { done(); reject(new Error("the browser cannot play its picture")); };
    function done() {
      clearTimeout(timer);
      element.removeEventListener(name, onEvent);
      element.removeEventListener("error", onError);
    }
    element.addEventListener(name, onEvent);
    element.addEventListener("error", onError);
  });
}

// The frame at 10 % of the video as a JPEG Blob, drawn in its display proportions (the browser applies the pixel
// aspect and the rotation), at most FRAME_MAX_SIDE px on its longer side.
async function coverFrame(video) {
  const player = document.createElement("video");
  player.muted = true;
  player.preload = "auto";
  const url = URL.createObjectURL(video);
  try {
    player.src = url;
    await waitFor(player, "loadeddata", FRAME_TIMEOUT_MILLISECONDS);
    if (!player.videoWidth || !player.videoHeight) throw new Error("the browser shows no picture of it");
    const duration = Number.isFinite(player.duration) ? player.duration : 0;
    const seeked = waitFor(player, "seeked", FRAME_TIMEOUT_MILLISECONDS);
    player.currentTime = duration * FRAME_AT;
    await seeked;
    const scale = Math.min(1, FRAME_MAX_SIDE / Math.max(player.videoWidth, player.videoHeight));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(2, Math.round(player.videoWidth * scale));
    canvas.height = Math.max(2, Math.round(player.videoHeight * scale));
    canvas.getContext("2d").drawImage(player, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", FRAME_QUALITY));
    if (!blob) throw new Error("the browser could not make a JPEG of it");
    return blob;
  } finally {
    player.removeAttribute("src");
    player.load();
    URL.revokeObjectURL(url);
  }
}

// --- Chapters and title mediabunny does not read ------------------------------------------------------------------

// MP4's Nero chapter box (what ffmpeg writes beside its chapter track): version, flags, [reserved], a count, then
// per chapter its start in 100 ns units and a title of one length byte. A chapter runs to the next one's start; the
// last one to the end (the server knows it).
function neroChapters(box) {
  const view = new DataView(box.buffer, box.byteOffset, box.byteLength);
  let at = box[0] >= 1 ? 8 : 4;
  const count = box[at];
  at += 1;
  const starts = [];
  const decoder = new TextDecoder();
  for (let index = 0; index < count && at + 9 <= box.length; index += 1) {
    const start = Number(view.getBigUint64(at)) / 1e7;
    const length = box[at + 8];
    const title = decoder.decode(box.subarray(at + 9, at + 9 + length));
    at += 9 + length;
    starts.push({ start, title });
  }
  return starts.map((chapter, index) => (index + 1 < starts.length
    ? { ...chapter, end: starts[index + 1].start } : chapter)).filter((chapter, index, all) =>
    index + 1 >= all.length || chapter.end > chapter.start);
}

const EBML = {
  segment: 0x18538067, cluster: 0x1F43B675, info: 0x1549A966, title: 0x7BA9, chapters: 0x1043A770,
  edition: 0x45B9, atom: 0xB6, start: 0x91, end: 0x92, hidden: 0x98, display: 0x80, string: 0x85,
  tags: 0x1254C367, tag: 0x7373, targets: 0x63C0, targetType: 0x63CA, void: 0xEC,
};

// An EBML variable-length number at `at`: its value (the marker bit kept for IDs) and its length; null past the end.
function vint(bytes, at, keepMarker) {
  if (at >= bytes.length) return null;
  const first = bytes[at];
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length += 1;
  if (length > 8 || at + length > bytes.length) return null;
  let value = keepMarker ? first : first & (0xFF >> length);
  let unknown = value === (0xFF >> length);
  for (let index = 1; index < length; index += 1) {
    value = value * 256 + bytes[at + index];
    unknown = unknown && bytes[at + index] === 0xFF;
  }
  return { value, length, unknown: !keepMarker && unknown };
}

// The elements in bytes[from, to): [{id, start (of its data), size, at (of its ID)}]; stops at one whose size is
// unknown or that runs past `to`, or at `stopAt`.
function elements(bytes, from, to, stopAt = null) {
  const found = [];
  let at = from;
  while (at < to) {
    const id = vint(bytes, at, true);
    const size = id && vint(bytes, at + id.length, false);
    if (!size) break;
    const start = at + id.length + size.length;
    if (id.value === stopAt) { found.push({ id: id.value, start, size: null, at }); break; }
    if (size.unknown || start + size.value > to) {
      found.push({ id: id.value, start, size: null, at });
      break;
    }
    found.push({ id: id.value, start, size: size.value, at });
    at = start + size.value;
  }
  return found;
}

function unsigned(bytes, element) {
  let value = 0;
  for (let index = 0; index < element.size; index += 1) value = value * 256 + bytes[element.start + index];
  return value;
}

function text(bytes, element) {
  return new TextDecoder().decode(bytes.subarray(element.start, element.start + element.size)).replace(/\0+$/, "");
}

function children(bytes, element) {
  return elements(bytes, element.start, element.start + element.size);
}

// The title (Segment > Info > Title) and chapters (the first edition's visible atoms) of a Matroska or WebM file,
// read from the elements before its first cluster, where muxers put them.
async function readMatroskaHead(video) {
  const bytes = new Uint8Array(await video.slice(0, Math.min(video.size, MATROSKA_HEAD_BYTES)).arrayBuffer());
  const top = elements(bytes, 0, bytes.length);
  const segment = top.find((element) => element.id === EBML.segment);
  if (!segment) return null;
  const end = segment.size === null ? bytes.length : Math.min(bytes.length, segment.start + segment.size);
  const level1 = elements(bytes, segment.start, end, EBML.cluster).filter((element) => element.size !== null);
  let title = null;
  let chapters = null;
  for (const element of level1) {
    if (element.id === EBML.info) {
      const found = children(bytes, element).find((child) => child.id === EBML.title);
      if (found) title = text(bytes, found) || null;
    }
    if (element.id === EBML.chapters && chapters === null) {
      const edition = children(bytes, element).find((child) => child.id === EBML.edition);
      if (edition) chapters = editionChapters(bytes, edition);
    }
  }
  return { title, chapters };
}

function editionChapters(bytes, edition) {
  const chapters = [];
  for (const atom of children(bytes, edition).filter((child) => child.id === EBML.atom)) {
    const fields = children(bytes, atom);
    const hidden = fields.find((field) => field.id === EBML.hidden);
    if (hidden && unsigned(bytes, hidden)) continue;
    const start = fields.find((field) => field.id === EBML.start);
    if (!start) continue;
    const end = fields.find((field) => field.id === EBML.end);
    const display = fields.find((field) => field.id === EBML.display);
    const name = display && children(bytes, display).find((field) => field.id === EBML.string);
    const chapter = { start: unsigned(bytes, start) / 1e9 };
    if (end && unsigned(bytes, end) > unsigned(bytes, start)) chapter.end = unsigned(bytes, end) / 1e9;
    if (name) chapter.title = text(bytes, name);
    chapters.push(chapter);
  }
  return chapters;
}

// mediabunny writes its Matroska tags with the target type "MOVIE", which ffmpeg (the server) then reads as
// `MOVIE/TITLE`, `MOVIE/ARTIST`: not the video's title and artist. The TargetType element is blanked in place into a
// Void element of the same length (its TargetTypeValue, 50, says the same), so the tags read as plain ones.
function plainMatroskaTags(bytes) {
  const segment = elements(bytes, 0, bytes.length).find((element) => element.id === EBML.segment);
  if (!segment) return;
  const end = segment.size === null ? bytes.length : segment.start + segment.size;
  for (const tags of elements(bytes, segment.start, end).filter((element) => element.id === EBML.tags)) {
    if (tags.size === null) continue;
    for (const tag of children(bytes, tags).filter((element) => element.id === EBML.tag)) {
      for (const targets of children(bytes, tag).filter((element) => element.id === EBML.targets)) {
        for (const type of children(bytes, targets).filter((element) => element.id === EBML.targetType)) {
          blank(bytes, type.at, type.start + type.size);
        }
      }
    }
  }
}

// bytes[from, to) as one EBML Void element (ID 0xEC, a size, zeros).
function blank(bytes, from, to) {
  const total = to - from;
  const sizeLength = total - 1 <= 127 ? 1 : 8;
  const size = total - 1 - sizeLength;
  if (size < 0) return;
  bytes.fill(0, from, to);
  bytes[from] = EBML.void;
  if (sizeLength === 1) {
    bytes[from + 1] = 0x80 | size;
  } else {
    bytes[from + 1] = 0x01;
    let rest = size;
    for (let index = 7; index >= 1; index -= 1) {
      bytes[from + 1 + index] = rest % 256;
      rest = Math.floor(rest / 256);
    }
  }
}

// --- Sending ------------------------------------------------------------------------------------------------------

// Uploads the extract in one multipart request (the `file`, its `cover` and `chapters` parts), with the bytes sent
// reported as they go. The options go as query parameters, as the command sends them: in the form, the `cover`
// option (frame, attached, none) would share its name with the `cover` part (the picture). Resolves with the
// upload's answer; rejects with {status, body} when the server refuses it (status 0: no answer), or {aborted: true}
// once `abort()` of the handle given to onRequest was called.
export function sendExtract(url, headers, made, options, onProgress, onRequest = () => {}) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    if (made.cover) form.append("cover", made.cover, "frame.jpg");
    if (made.chapters) {
      form.append("chapters", new Blob([JSON.stringify(made.chapters)], { type: "application/json" }),
                  "chapters.json");
    }
    form.append("file", made.file, made.name);
    const request = new XMLHttpRequest();
    const query = new URLSearchParams(options).toString();
    request.open("POST", query ? `${url}/?${query}` : url);
    for (const [name, value] of Object.entries(headers)) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => { if (event.lengthComputable) onProgress((100 * event.loaded) / event.total); };
    request.onload = () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch { /* not JSON: the status says enough */ }
      if (request.status >= 200 && request.status < 300) resolve(body);
      else reject({ status: request.status, body });
    };
    request.onerror = () => reject({ status: 0, body: null });
    request.onabort = () => reject({ aborted: true });
    onRequest({ abort: () => request.abort() });
    request.send(form);
  });
}
