// civstack wallet: the one-time payment code and the camera scanner.
//
// Payment code: the page asks the server once for a device secret, keeps it
// in this browser's storage, and computes codes itself every 10 seconds, the
// same way the server checks them (internal/payment/code.go):
//
//   88 + handle + (step mod 10) + 7 digits
//   step = floor(unix seconds / 10)
//   digits = RFC 4226 truncation of HMAC-SHA256(secret, "civstack-pay-code" ‖ handle ‖ step as 8 bytes big-endian) mod 10^7
//
// The server draws the computed code as an image; it never sees the secret
// again. A device older than 20 hours is replaced, so the handle a shop sees
// changes daily.
//
// Print: buttons marked data-print print the page.
//
// Scanner: where the browser has a camera, the pages that take a code offer
// it; a QR code read fills the form and submits it. The browser's own
// BarcodeDetector reads the frames where it has one (Chromium on Android,
// macOS, ChromeOS); elsewhere (iPhones, Firefox, Chromium on Linux and
// Windows) the vendored jsQR (docs/vendored.md) does, loaded only when the
// camera is started. The frames never leave the browser. The paste field
// is always there.
(function () {
  "use strict";

  var maxAge = 20 * 3600 * 1000;

  function b64uToBytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  async function provision(storeKey) {
    var res = await fetch("/wallet/devices", {
      method: "POST", credentials: "same-origin",
      headers: { "Accept": "application/json", "Content-Type": "application/json" }, body: "{}"
    });
    var data = {};
    try { data = await res.json(); } catch (e) { /* empty body */ }
    if (!res.ok) throw new Error(data.detail || ("The server answered " + res.status));
    var dev = { handle: data.handle, secret: data.secret, at: Date.now() };
    try { localStorage.setItem(storeKey, JSON.stringify(dev)); } catch (e) { /* private mode: keep it for this page */ }
    return dev;
  }

  async function device(storeKey) {
    var dev = null;
    try { dev = JSON.parse(localStorage.getItem(storeKey) || "null"); } catch (e) { dev = null; }
    if (!dev || !dev.handle || !dev.secret || !(Date.now() - dev.at < maxAge)) dev = await provision(storeKey);
    return dev;
  }

  async function otp(key, handle, step) {
    var prefix = new TextEncoder().encode("civstack-pay-code" + handle);
    var msg = new Uint8Array(prefix.length + 8);
    msg.set(prefix, 0);
    var view = new DataView(msg.buffer);
    view.setUint32(prefix.length, Math.floor(step / 4294967296));
    view.setUint32(prefix.length + 4, step >>> 0);
    var sum = new Uint8Array(await crypto.subtle.sign("HMAC", key, msg));
    var off = sum[sum.length - 1] & 0x0f;
    var v = ((sum[off] & 0x7f) << 24) | (sum[off + 1] << 16) | (sum[off + 2] << 8) | sum[off + 3];
    return String(v % 10000000).padStart(7, "0");
  }

  async function startCode(box) {
    var status = document.getElementById("paycode-status");
    var digits = document.getElementById("paycode-digits");
    var qr = document.getElementById("paycode-qr");
    var bar = document.getElementById("paycode-bar");
    if (!window.crypto || !crypto.subtle) {
      status.textContent = "This browser cannot compute payment codes here (it needs a secure https address).";
      status.classList.add("error");
      return;
    }
    var storeKey = "civstack.device." + box.dataset.person;
    var dev, key;
    try {
      dev = await device(storeKey);
      key = await crypto.subtle.importKey("raw", b64uToBytes(dev.secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    } catch (err) {
      status.textContent = "Could not prepare this device: " + err.message;
      status.classList.add("error");
      return;
    }
    var shown = -1, timer;
    async function tick() {
      if (!document.body.contains(box)) { clearInterval(timer); return; } // navigated away
      var step = Math.floor(Date.now() / 10000);
      if (step !== shown) {
        shown = step;
        var code = "88" + dev.handle + (step % 10) + await otp(key, dev.handle, step);
        digits.textContent = code.replace(/(\d{2})(\d{4})(\d{4})(\d{4})(\d{4})/, "$1 $2 $3 $4 $5");
        digits.dataset.code = code;
        qr.src = "/wallet/symbol.svg?code=" + code;
        bar.src = "/wallet/symbol.svg?kind=code128&code=" + code;
      }
      var left = 10 - Math.floor(Date.now() / 1000) % 10;
      status.textContent = "New code in " + left + " s. Each code works once, for 60 seconds.";
    }
    await tick();
    timer = setInterval(tick, 1000);
  }

  // qrReader returns a function that reads a QR code's text from a video
  // frame ("" when there is none), or null when this browser cannot.
  async function qrReader() {
    if ("BarcodeDetector" in window) {
      try {
        if ((await BarcodeDetector.getSupportedFormats()).indexOf("qr_code") >= 0) {
          var detector = new BarcodeDetector({ formats: ["qr_code"] });
          return async function (video) {
            var found = await detector.detect(video);
            return found.length ? found[0].rawValue : "";
          };
        }
      } catch (e) { /* fall back to jsQR */ }
    }
    var meta = document.querySelector("meta[name=civstack-qr-reader]");
    if (!meta) return null;
    if (typeof window.jsQR !== "function") {
      try {
        await new Promise(function (resolve, reject) {
          var el = document.createElement("script");
          el.src = meta.content;
          el.onload = resolve;
          el.onerror = reject;
          document.head.appendChild(el);
        });
      } catch (e) { return null; }
      if (typeof window.jsQR !== "function") return null;
    }
    var canvas = document.createElement("canvas");
    var cx = canvas.getContext("2d", { willReadFrequently: true });
    return async function (video) {
      var w = video.videoWidth, h = video.videoHeight;
      if (!w || !h) return "";
      var scale = Math.min(1, 1280 / Math.max(w, h)); // a health certificate's code needs the detail
      canvas.width = Math.round(w * scale);
      canvas.height = Math.round(h * scale);
      cx.drawImage(video, 0, 0, canvas.width, canvas.height);
      var img = cx.getImageData(0, 0, canvas.width, canvas.height);
      var code = window.jsQR(img.data, img.width, img.height, { inversionAttempts: "dontInvert" });
      return code ? code.data : "";
    };
  }

  // The scanner whose camera is on, if any: it goes off when the page goes
  // (a boosted link swaps it out, or the tab is left).
  var filming = null;
  window.addEventListener("pagehide", function () { if (filming) filming.stop(); });
  document.addEventListener("htmx:beforeSwap", function (ev) {
    if (filming && ev.detail.target && ev.detail.target.contains(filming.box)) filming.stop();
  });

  function startScanner(box) {
    var btn = box.querySelector("[data-scan-start]");
    var video = box.querySelector("[data-scan-video]");
    var status = box.querySelector("[data-scan-status]");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return; // the paste field remains
    var stopBtn = document.createElement("button");
    stopBtn.type = "button";
    stopBtn.className = "secondary button";
    stopBtn.setAttribute("data-scan-stop", "");
    stopBtn.textContent = "Stop the camera";
    stopBtn.hidden = true;
    btn.after(stopBtn);
    btn.hidden = false;
    var stream = null, timer = null;

    // stop turns the camera (and its light) off and stops reading: on the
    // Stop button, once a code is read, and when the page goes.
    function stop() {
      if (timer) { clearInterval(timer); timer = null; }
      if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
      if (filming && filming.box === box) filming = null;
      video.srcObject = null;
      video.hidden = true;
      stopBtn.hidden = true;
      btn.hidden = false;
      btn.disabled = false;
    }
    stopBtn.addEventListener("click", function () { stop(); status.textContent = ""; });

    btn.addEventListener("click", async function () {
      btn.disabled = true;
      status.textContent = "Starting the camera…";
      var reading = qrReader();
      var s;
      try {
        // Without a size, browsers film at 640x480: too coarse for a health
        // certificate's dense code unless it fills the screen.
        s = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } } });
      } catch (err) {
        status.textContent = "The camera is not available (" + err.message + "). Paste the code's text instead.";
        btn.disabled = false;
        return;
      }
      stream = s;
      filming = { box: box, stop: stop };
      var read = await reading;
      if (!box.isConnected) { stop(); return; } // the page went meanwhile
      if (!read) {
        stop();
        btn.hidden = true;
        status.textContent = "This browser cannot read QR codes from the camera. Paste the code's text instead.";
        return;
      }
      video.srcObject = stream;
      video.hidden = false;
      btn.hidden = true;
      stopBtn.hidden = false;
      try { await video.play(); } catch (e) { /* frames are read all the same */ }
      status.textContent = "Point the camera at the QR code.";
      var busy = false;
      timer = setInterval(async function () {
        if (!box.isConnected) { stop(); return; }
        if (busy || !stream) return;
        busy = true;
        var text = "";
        try { text = await read(video); } catch (e) { text = ""; }
        busy = false;
        if (!text || !timer) return;
        stop();
        var form = document.getElementById(box.dataset.scanner || "pay-form");
        form.elements[box.dataset.field || "payload"].value = text;
        status.textContent = "Read. Checking the code…";
        form.requestSubmit();
      }, 250);
    });
  }

  // Print buttons (inline handlers are not allowed by the pages' CSP).
  document.addEventListener("click", function (ev) {
    if (ev.target.closest && ev.target.closest("[data-print]")) window.print();
  });

  // The agency's request form: show only the chosen service's fields (the
  // others are unticked); without script every field shows, named by service.
  function filterFields(form) {
    var sel = form.querySelector("select[name=service]");
    if (!sel) return;
    function apply() {
      form.querySelectorAll("label[class^='field-']").forEach(function (l) {
        var show = l.className === "field-" + sel.value;
        l.hidden = !show;
        if (!show) { var box = l.querySelector("input"); if (box) box.checked = false; }
      });
    }
    sel.addEventListener("change", apply);
    apply();
  }

  function init() {
    var ask = document.getElementById("ask-form");
    if (ask && !ask.dataset.started) { ask.dataset.started = "1"; filterFields(ask); }
    var box = document.getElementById("paycode");
    if (box && !box.dataset.started) { box.dataset.started = "1"; startCode(box); }
    var sc = document.querySelector("[data-scanner]");
    if (sc && !sc.dataset.started) { sc.dataset.started = "1"; startScanner(sc); }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
  document.addEventListener("htmx:load", init);
})();
