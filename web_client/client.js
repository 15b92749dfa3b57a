// anchor web client: watch the anchor over WebRTC, push a microphone (as a WebRTC track or over
// the websocket), interrupt, speak a file or a typed text, and show live stats. Plain JS, no
// build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const TOKEN_KEY = "anchor.token";

  const state = {
    pc: null,
    dc: null,
    mic: null,        // MediaStream of the microphone (track or websocket push)
    ws: null,
    audioCtx: null,
    info: null,       // /avatar.json
    stamps: [],       // recent per-frame server stamps from the data channel
    stats: {},        // last computed stats (also exposed for tests)
    statsTimer: null,
  };

  // ---------------------------------------------------------------------------------------------
  // small helpers

  function message(text, isError = false) {
    const el = $("message");
    el.textContent = text || "";
    el.classList.toggle("error", !!isError);
  }

  function setStatus(text) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("connected", text === "connected");
    el.classList.toggle("failed", text === "failed");
  }

  function token() {
    return $("token").value.trim();
  }

  function authHeaders() {
    const t = token();
    return t ? { Authorization: `Bearer ${t}` } : {};
  }

  function median(values) {
    if (!values.length) return null;
    const s = [...values].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  function fmtMs(v) {
    return v === null || v === undefined || Number.isNaN(v) ? "–" : `${Math.round(v)} ms`;
  }

  async function errorText(resp) {
    const text = (await resp.text()).trim();
    return `${resp.status}: ${text || resp.statusText}`;
  }

  function waitForIce(pc, timeoutMs = 3000) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(done, timeoutMs);  // non-trickle: send whatever we have by then
    });
  }

  async function loadInfo() {
    try {
      const resp = await fetch("avatar.json");
      if (resp.ok) state.info = await resp.json();
    } catch (err) {
      state.info = null;
    }
    if (state.info) {
      $("stat-lookahead").textContent =
        `${Math.round(state.info.lookahead_ms)} / ${Math.round(state.info.latency_target_ms)} ms`;
    }
    return state.info;
  }

  // ---------------------------------------------------------------------------------------------
  // WebRTC: watch (recvonly) or watch + push the microphone track (sendrecv audio)

  async function connect(push = false) {
    hangup();
    message("");
    setStatus("connecting");
    await loadInfo();
    const pc = new RTCPeerConnection({ iceServers: [] });
    state.pc = pc;
    const dc = pc.createDataChannel("stats", { ordered: false, maxRetransmits: 0 });
    dc.onmessage = onStamp;
    state.dc = dc;

    // recvonly video + audio to watch; pushing adds the microphone as a sendonly audio track
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    if (push) {
      state.mic = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
      pc.addTransceiver(state.mic.getAudioTracks()[0], { direction: "sendonly" });
    }
    const remote = new MediaStream();
    video.srcObject = remote;
    pc.ontrack = (ev) => remote.addTrack(ev.track);
    pc.onconnectionstatechange = () => {
      setStatus(pc.connectionState);
      if (pc.connectionState === "failed") message("connection failed", true);
    };

    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    const body = { sdp: pc.localDescription.sdp, type: pc.localDescription.type, push };
    if (push) body.token = token();
    const resp = await fetch("offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!resp.ok) {
      const text = await errorText(resp);
      hangup();
      throw new Error(text);
    }
    await pc.setRemoteDescription(await resp.json());
    $("hangup").disabled = false;
    $("push-mic").classList.toggle("active", push);
    state.statsTimer = setInterval(updateStats, 1000);
  }

  function hangup() {
    if (state.statsTimer) clearInterval(state.statsTimer);
    state.statsTimer = null;
    if (state.pc) state.pc.close();
    state.pc = null;
    state.dc = null;
    stopMic();
    state.stamps = [];
    video.srcObject = null;
    $("hangup").disabled = true;
    $("push-mic").classList.remove("active");
    setStatus("disconnected");
  }

  function stopMic() {
    if (state.mic) state.mic.getTracks().forEach((t) => t.stop());
    state.mic = null;
  }

  // ---------------------------------------------------------------------------------------------
  // websocket push: the microphone as PCM16 chunks (works alongside a watch-only connection)

  async function pushOverWebsocket() {
    if (state.ws) {
      state.ws.close();
      return;
    }
    const mic = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(mic);
    const proc = ctx.createScriptProcessor(1024, 1, 1);
    const proto = location.protocol === "https:" ? "wss" : "ws";
    // relative to the page: /ws/audio, or /c/NAME/ws/audio on a channel's page
    const base = location.pathname.replace(/[^/]*$/, "");
    const url = `${proto}://${location.host}${base}ws/audio?token=${encodeURIComponent(token())}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    state.audioCtx = ctx;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      ws.send(JSON.stringify({ sample_rate: ctx.sampleRate }));
      $("push-ws").classList.add("active");
      message(`pushing microphone over websocket at ${ctx.sampleRate} Hz`);
    };
    ws.onmessage = () => {};
    proc.onaudioprocess = (ev) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const x = ev.inputBuffer.getChannelData(0);
      const pcm = new Int16Array(x.length);
      for (let i = 0; i < x.length; i++) {
        const v = Math.max(-1, Math.min(1, x[i]));
        pcm[i] = v < 0 ? v * 32768 : v * 32767;
      }
      ws.send(pcm.buffer);
    };
    source.connect(proc);
    proc.connect(ctx.destination);
    ws.onclose = (ev) => {
      proc.disconnect();
      source.disconnect();
      mic.getTracks().forEach((t) => t.stop());
      ctx.close();
      state.ws = null;
      $("push-ws").classList.remove("active");
      if (!opened) {
        message("websocket closed: refused before it opened (check the token)", true);
      } else if (ev.code !== 1000 && ev.code !== 1005) {
        message(`websocket closed: ${ev.code} ${ev.reason || ""}`, true);
      } else {
        message("websocket push ended");
      }
    };
  }

  // ---------------------------------------------------------------------------------------------
  // control

  async function interrupt() {
    const resp = await fetch("interrupt", { method: "POST", headers: authHeaders() });
    if (!resp.ok) throw new Error(await errorText(resp));
    const body = await resp.json();
    message(`interrupted (${body.dropped} queued items dropped)`);
  }

  async function speak() {
    const file = $("speak-file").files[0];
    if (!file) throw new Error("choose an audio file first");
    const form = new FormData();
    form.append("file", file, file.name);
    const resp = await fetch("speak", { method: "POST", headers: authHeaders(), body: form });
    if (!resp.ok) throw new Error(await errorText(resp));
    message(`queued ${file.name}`);
  }

  // POST /say: the server synthesises the text and speaks it sentence by sentence (queued like a
  // file; Interrupt stops it). Errors (empty, too long, markup, no TTS engine) come back as one line.
  async function say() {
    const text = $("say-text").value;
    if (!text.trim()) throw new Error("type something to say first");
    const body = { text };
    const voice = $("say-voice").value.trim();
    if (voice) body.voice = voice;
    const resp = await fetch("say", {
      method: "POST",
      headers: { ...authHeaders(), "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    const r = await resp.json();
    const ahead = r.ahead ? `, ${r.ahead} ahead` : "";
    message(r.status === "queued" ? `saying ${r.id}${ahead}` : `${r.id}: ${r.status}`);
    return r;
  }

  // ---------------------------------------------------------------------------------------------
  // stats: server stamps over the data channel + the browser's own getStats

  function onStamp(ev) {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (err) {
      return;
    }
    if (msg.type === "error") {
      message(msg.message, true);
      return;
    }
    if (msg.type !== "frame") return;
    msg.received = performance.now();
    state.stamps.push(msg);
    if (state.stamps.length > 250) state.stamps.splice(0, state.stamps.length - 250);
  }

  async function updateStats() {
    const pc = state.pc;
    if (!pc) return;
    const now = performance.now();
    const recent = state.stamps.filter((s) => now - s.received < 2000);
    const speech = state.stamps.filter((s) => s.speech && s.latency_ms !== undefined).slice(-50);
    const s = {
      serverFps: recent.length / 2,
      latencyMs: median(speech.map((m) => m.latency_ms)),
      avServerMs: median(state.stamps.slice(-50).filter((m) => m.av_offset_ms !== undefined)
        .map((m) => m.av_offset_ms)),
      speaking: state.stamps.length ? state.stamps[state.stamps.length - 1].speech : false,
    };
    let videoIn = null;
    let audioIn = null;
    const report = await pc.getStats();
    report.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video") videoIn = r;
      if (r.type === "inbound-rtp" && r.kind === "audio") audioIn = r;
    });
    if (videoIn) {
      s.framesDecoded = videoIn.framesDecoded || 0;
      s.framesDropped = videoIn.framesDropped || 0;
      s.fps = videoIn.framesPerSecond || 0;
      s.width = videoIn.frameWidth;
      s.height = videoIn.frameHeight;
      if (videoIn.jitterBufferEmittedCount) {
        s.videoJitterMs = (1000 * videoIn.jitterBufferDelay) / videoIn.jitterBufferEmittedCount;
      }
    }
    if (audioIn && audioIn.jitterBufferEmittedCount) {
      s.audioJitterMs = (1000 * audioIn.jitterBufferDelay) / audioIn.jitterBufferEmittedCount;
    }
    if (videoIn && audioIn && videoIn.estimatedPlayoutTimestamp && audioIn.estimatedPlayoutTimestamp) {
      // video lag: the audio being heard is this much newer than the picture being shown
      s.avClientMs = audioIn.estimatedPlayoutTimestamp - videoIn.estimatedPlayoutTimestamp;
    }
    state.stats = s;

    $("stat-fps").textContent = s.fps !== undefined ? s.fps.toFixed(1) : "–";
    $("stat-server-fps").textContent = s.serverFps.toFixed(1);
    $("stat-latency").textContent = fmtMs(s.latencyMs);
    $("stat-jitter").textContent = s.videoJitterMs !== undefined
      ? `video ${fmtMs(s.videoJitterMs)}, audio ${fmtMs(s.audioJitterMs)}` : "–";
    $("stat-av-server").textContent = fmtMs(s.avServerMs);
    $("stat-av-client").textContent = fmtMs(s.avClientMs);
    $("stat-frames").textContent = s.framesDecoded !== undefined
      ? `${s.framesDecoded} / ${s.framesDropped}` : "–";
    $("stat-res").textContent = s.width ? `${s.width}×${s.height}` : "–";
    $("stat-speech").textContent = s.speaking ? "yes" : "no";
    drawMouthBox();
  }

  function drawMouthBox() {
    const el = $("mouth-box");
    const box = state.info && state.info.mouth_box;
    if (!$("show-mouth").checked || !box || !video.videoWidth) {
      el.hidden = true;
      return;
    }
    // object-fit: contain — find the displayed picture's rectangle inside the element
    const scale = Math.min(video.clientWidth / video.videoWidth, video.clientHeight / video.videoHeight);
    const ox = (video.clientWidth - video.videoWidth * scale) / 2;
    const oy = (video.clientHeight - video.videoHeight * scale) / 2;
    el.style.left = `${ox + box[0] * scale}px`;
    el.style.top = `${oy + box[1] * scale}px`;
    el.style.width = `${(box[2] - box[0]) * scale}px`;
    el.style.height = `${(box[3] - box[1]) * scale}px`;
    el.hidden = false;
  }

  // Mean absolute change of the pixels in `box` ([x0, y0, x1, y1] in video pixels, default: the
  // mouth box) between successive frames over `ms` milliseconds: how much the mouth moves.
  function regionActivity(box, ms = 1000) {
    box = box || (state.info && state.info.mouth_box);
    return new Promise((resolve, reject) => {
      if (!video.videoWidth) {
        reject(new Error("no video yet"));
        return;
      }
      const [x0, y0, x1, y1] = box;
      const w = Math.max(1, x1 - x0);
      const h = Math.max(1, y1 - y0);
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      const diffs = [];
      let prev = null;
      const start = performance.now();
      const sample = () => {
        ctx.drawImage(video, x0, y0, w, h, 0, 0, w, h);
        const data = ctx.getImageData(0, 0, w, h).data;
        if (prev) {
          let sum = 0;
          for (let i = 0; i < data.length; i += 4) {
            sum += Math.abs(data[i] - prev[i]) + Math.abs(data[i + 1] - prev[i + 1])
              + Math.abs(data[i + 2] - prev[i + 2]);
          }
          diffs.push(sum / (w * h * 3));
        }
        prev = data;
        if (performance.now() - start < ms) {
          next();
        } else {
          resolve({
            mean: diffs.reduce((a, b) => a + b, 0) / Math.max(1, diffs.length),
            max: Math.max(0, ...diffs),
            samples: diffs.length,
          });
        }
      };
      const next = () => {
        if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => sample());
        else setTimeout(sample, 40);
      };
      next();
    });
  }

  // ---------------------------------------------------------------------------------------------
  // wiring

  function guard(fn) {
    return async () => {
      try {
        await fn();
      } catch (err) {
        message(err.message || String(err), true);
      }
    };
  }

  $("token").value = localStorage.getItem(TOKEN_KEY) || "";
  $("token").addEventListener("change", () => localStorage.setItem(TOKEN_KEY, token()));
  $("watch").addEventListener("click", guard(() => connect(false)));
  $("push-mic").addEventListener("click", guard(() => connect(true)));
  $("push-ws").addEventListener("click", guard(pushOverWebsocket));
  $("hangup").addEventListener("click", hangup);
  $("interrupt").addEventListener("click", guard(interrupt));
  $("speak").addEventListener("click", guard(speak));
  $("say").addEventListener("click", guard(say));
  $("say-text").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      guard(say)();
    }
  });
  $("unmute").addEventListener("change", () => { video.muted = !$("unmute").checked; });
  $("show-mouth").addEventListener("change", drawMouthBox);
  video.muted = true;  // autoplay policies: start muted, the checkbox turns sound on

  window.anchor = {
    connect,
    hangup,
    interrupt,
    say,
    regionActivity,
    loadInfo,
    stats: () => state.stats,
    stamps: () => state.stamps.slice(),
    updateStats,
  };
  async function loadChannels() {
    // Several anchors on one server: a picker that moves to /c/NAME/ (hidden with one channel).
    let list = [];
    try {
      const resp = await fetch("/channels.json");
      if (resp.ok) list = (await resp.json()).channels || [];
    } catch (err) {
      list = [];
    }
    const select = $("channel");
    if (list.length < 2) return;
    const here = location.pathname;
    for (const ch of list) {
      const opt = document.createElement("option");
      opt.value = ch.path;
      opt.textContent = `${ch.name} (${ch.avatar})`;
      opt.selected = here === ch.path || (here === "/" && ch.default);
      select.appendChild(opt);
    }
    select.addEventListener("change", () => { location.href = select.value; });
    $("channel-picker").hidden = false;
  }

  loadInfo();
  loadChannels();
})();
