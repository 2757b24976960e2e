// The websocket to the wall hub (dashboards/PROTOCOL.md): hello, welcome, layouts, tiles,
// camera pictures and live video as binary frames, pings for the clock offset and for liveness, and
// reconnection with exponential backoff and jitter. The page keeps its DOM across
// reconnections; only this object's socket is replaced.

const MAGIC = [0x49, 0x4f, 0x43, 0x57]; // "IOCW"
const VIDEO_MAGIC = [0x49, 0x4f, 0x43, 0x56]; // "IOCV"
const decoder = new TextDecoder();

/** magic | u16 BE header length | JSON header | payload  ->  {header, body: Uint8Array}. */
function parseBinary(buffer, magic, what) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 6 || magic.some((b, i) => bytes[i] !== b)) throw new Error(`not a ${what}`);
  const n = (bytes[4] << 8) | bytes[5];
  if (6 + n > bytes.length) throw new Error(`${what} shorter than its header`);
  return { header: JSON.parse(decoder.decode(bytes.subarray(6, 6 + n))), body: bytes.subarray(6 + n) };
}

/** b"IOCV" | u16 BE header length | JSON header | H.264 access unit (Annex B)  ->  {header, data}. */
export function parseVideo(buffer) {
  const { header, body } = parseBinary(buffer, VIDEO_MAGIC, "video frame");
  return { header, data: body };
}

/** b"IOCW" | u16 BE header length | JSON header | JPEG  ->  {header, jpeg: Blob}. */
export function parseFrame(buffer) {
  const { header, body } = parseBinary(buffer, MAGIC, "wall picture frame");
  return { header, jpeg: new Blob([body], { type: "image/jpeg" }) };
}

// Close codes after which trying again with the same token cannot help.
const FATAL = new Set([4400, 4401, 4403]);

export class HubClient {
  /**
   * url: the ws:// address, or an async function returning it (asked again after failures).
   * hello: {token, role, screen?, video?}. on: {state, welcome, layout, tile, picture, video,
   * screens, alerts, message, fatal}: each optional.
   * fatalRetryMs: for kiosks, try again this long after an auth failure (null: stop).
   */
  constructor({ url, hello, on = {}, pingEveryMs = 10000, deadAfterMs = 25000, fatalRetryMs = null }) {
    this.url = url;
    this.hello = hello;
    this.on = on;
    this.pingEveryMs = pingEveryMs;
    this.deadAfterMs = deadAfterMs;
    this.fatalRetryMs = fatalRetryMs;
    this.offset = 0; // server clock minus ours, seconds
    this.samples = []; // [{rtt, offset}] from pongs; the offset of the fastest round trip wins
    this.attempt = 0;
    this.state = "idle";
    this.connections = 0;
    this.lastError = null;
    this.ws = null;
    this._timer = null;
    this._pinger = null;
    this._stopped = true;
    this._lastHeard = 0;
    this._resolvedUrl = null;
  }

  start() {
    if (!this._stopped) return;
    this._stopped = false;
    this._onOnline = () => this.reconnectNow();
    this._onOffline = () => this._drop("offline");
    window.addEventListener("online", this._onOnline);
    window.addEventListener("offline", this._onOffline);
    this._connect();
  }

  stop() {
    this._stopped = true;
    window.removeEventListener("online", this._onOnline);
    window.removeEventListener("offline", this._onOffline);
    clearTimeout(this._timer);
    clearInterval(this._pinger);
    this._detach(1000);
    this._setState("idle");
  }

  /** The server's clock now, epoch seconds. */
  serverNow() {
    return Date.now() / 1000 + this.offset;
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  reconnectNow() {
    if (this._stopped || this.state === "open") return;
    clearTimeout(this._timer);
    this.attempt = 0;
    this._detach(1000);
    this._connect();
  }

  _setState(state, detail) {
    this.state = state;
    if (this.on.state) this.on.state(state, detail);
  }

  async _connect() {
    clearTimeout(this._timer);
    this._setState(this.connections ? "reconnecting" : "connecting");
    let url = this._resolvedUrl;
    if (!url) {
      try {
        url = typeof this.url === "function" ? await this.url() : this.url;
      } catch (err) {
        // the API refused the token: the hub would too
        if (err && (err.status === 401 || err.status === 403)) return this._fatal(4000 + err.status, String(err.message || err));
        return this._retry();
      }
      if (this._stopped) return;
      this._resolvedUrl = url;
    }
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      this._resolvedUrl = null;
      return this._retry();
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let helloSentAt = 0;
    ws.onopen = () => {
      helloSentAt = Date.now();
      ws.send(JSON.stringify({ type: "hello", ...this.hello }));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this._lastHeard = performance.now();
      if (typeof ev.data === "string") this._text(ev.data, helloSentAt);
      else this._binary(ev.data);
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      clearInterval(this._pinger);
      if (this._stopped) return;
      if (FATAL.has(ev.code)) return this._fatal(ev.code, this.lastError || ev.reason);
      this._retry();
    };
  }

  _text(raw, helloSentAt) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    switch (msg.type) {
      case "welcome": {
        const now = Date.now();
        // before the first pong: assume the welcome left the hub halfway through the round trip
        this.offset = msg.now - (helloSentAt + now) / 2000;
        this.samples = [];
        this.attempt = 0;
        this.connections += 1;
        this.lastError = null;
        this._startPings();
        this._setState("open");
        if (this.on.welcome) this.on.welcome(msg);
        break;
      }
      case "pong":
        this._pong(msg);
        break;
      case "error":
        this.lastError = msg.reason || "error";
        break;
      default: {
        const handler = this.on[msg.type] || this.on.message;
        if (handler) handler(msg);
      }
    }
  }

  _binary(buffer) {
    // the fourth byte tells "IOCV" (video) from "IOCW" (a picture)
    const video = buffer.byteLength >= 4 && new Uint8Array(buffer, 3, 1)[0] === VIDEO_MAGIC[3];
    let frame;
    try {
      frame = video ? parseVideo(buffer) : parseFrame(buffer);
    } catch (err) {
      console.warn("hub: bad binary frame", err);
      return;
    }
    if (video) {
      if (this.on.video) this.on.video(frame.header, frame.data);
    } else if (this.on.picture) this.on.picture(frame.header, frame.jpeg);
  }

  _startPings() {
    clearInterval(this._pinger);
    const ping = () => {
      if (performance.now() - this._lastHeard > this.deadAfterMs) {
        // nothing heard for too long: the link is dead even if the socket does not know it yet
        this._drop("silent");
        return;
      }
      this.send({ type: "ping", t: performance.timeOrigin + performance.now() });
    };
    // a few quick pings first, for a good clock offset, then a steady rhythm
    for (const ms of [50, 400, 1200]) setTimeout(() => this.state === "open" && this.send({ type: "ping", t: performance.timeOrigin + performance.now() }), ms);
    this._pinger = setInterval(ping, this.pingEveryMs);
  }

  _pong(msg) {
    const sent = Number(msg.t);
    const now = performance.timeOrigin + performance.now();
    if (!Number.isFinite(sent) || !Number.isFinite(msg.now) || sent > now) return;
    const rtt = now - sent;
    this.samples.push({ rtt, offset: msg.now - (sent + now) / 2000 });
    if (this.samples.length > 12) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    this.offset = best.offset;
    this.rtt = rtt;
  }

  /** Abandon the current socket at once (its close may take a long time on a dead link). */
  _detach(code) {
    const ws = this.ws;
    this.ws = null;
    clearInterval(this._pinger);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code);
      } catch { /* already closing */ }
    }
  }

  _drop(why) {
    if (this._stopped || !this.ws) return;
    this._detach(1000);
    this._retry(why);
  }

  _retry(why) {
    if (this._stopped) return;
    // exponential backoff, capped, with jitter so that nine screens and every tablet do not
    // come back in the same millisecond after a restart
    const base = Math.min(15000, 500 * 2 ** Math.min(this.attempt, 5));
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt += 1;
    if (this.attempt > 3) this._resolvedUrl = null; // the hub may have moved: ask the API again
    this._setState(why === "offline" ? "offline" : "reconnecting", { delay });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _fatal(code, reason) {
    this._setState("failed", { code, reason });
    if (this.on.fatal) this.on.fatal(code, reason);
    if (this.fatalRetryMs && !this._stopped) {
      clearTimeout(this._timer);
      this._timer = setTimeout(() => this._connect(), this.fatalRetryMs);
    }
  }
}
