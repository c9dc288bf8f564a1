// civstack passkey ceremonies: registration, sign-in, adding a passkey and
// confirming a large payment.
// The server sends WebAuthn options as JSON (binary fields in base64url); this
// script converts them for navigator.credentials and posts the result back.
// Listeners are delegated from document so that htmx-boosted pages work.
(function () {
  "use strict";

  function b64uToBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function bufToB64u(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creationOptions(pk) {
    pk.challenge = b64uToBuf(pk.challenge);
    pk.user.id = b64uToBuf(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
    return pk;
  }
  function requestOptions(pk) {
    pk.challenge = b64uToBuf(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
    return pk;
  }
  function credentialJSON(cred) {
    var r = cred.response, out = {
      id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: bufToB64u(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = bufToB64u(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = bufToB64u(r.authenticatorData);
      out.response.signature = bufToB64u(r.signature);
      if (r.userHandle) out.response.userHandle = bufToB64u(r.userHandle);
    }
    return out;
  }
  async function post(url, body) {
    var res = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body || {})
    });
    var data = {};
    try { data = await res.json(); } catch (e) { /* empty body */ }
    if (!res.ok) throw new Error(data.detail || data.title || ("The server answered " + res.status));
    return data;
  }
  function say(el, msg, bad) {
    var s = el.querySelector(".passkey-status") || (el.parentElement && el.parentElement.querySelector(".passkey-status"));
    if (!s) return;
    s.textContent = msg;
    s.className = "passkey-status" + (bad ? " error" : "");
  }
  function explain(err) {
    if (err && err.name === "NotAllowedError") return "The passkey request was cancelled or timed out. Try again.";
    if (err && err.name === "InvalidStateError") return "This device already holds a passkey for your account.";
    if (err && err.name === "SecurityError") return "Passkeys need a secure address (https, or http://localhost).";
    return (err && err.message) || "Something went wrong.";
  }
  async function register(form) {
    var begin = await post("/auth/register/begin", { display_name: form.display_name.value });
    var cred = await navigator.credentials.create({ publicKey: creationOptions(begin.options.publicKey) });
    return post("/auth/register/finish?ceremony=" + encodeURIComponent(begin.ceremony), credentialJSON(cred));
  }
  async function addPasskey(form) {
    var begin = await post("/auth/passkeys/begin", { label: form.label.value });
    var cred = await navigator.credentials.create({ publicKey: creationOptions(begin.options.publicKey) });
    return post("/auth/passkeys/finish?ceremony=" + encodeURIComponent(begin.ceremony), credentialJSON(cred));
  }
  async function signin() {
    var begin = await post("/auth/login/begin", {});
    var cred = await navigator.credentials.get({ publicKey: requestOptions(begin.options.publicKey) });
    var next = new URLSearchParams(window.location.search).get("next") || "/";
    return post("/auth/login/finish?ceremony=" + encodeURIComponent(begin.ceremony) +
      "&next=" + encodeURIComponent(next), credentialJSON(cred));
  }
  // confirm binds one assertion to one payment: the server keeps the
  // payment's details with the challenge and pays when the assertion checks.
  async function confirmPayment(form) {
    var begin = await post("/auth/confirm/begin", {
      payload: form.payload.value, amount: form.amount.value, nonce: form.nonce.value
    });
    var cred = await navigator.credentials.get({ publicKey: requestOptions(begin.options.publicKey) });
    return post("/auth/confirm/finish?ceremony=" + encodeURIComponent(begin.ceremony), credentialJSON(cred));
  }
  async function run(el, fn) {
    if (!window.PublicKeyCredential) { say(el, "This browser does not support passkeys.", true); return; }
    say(el, "Waiting for your passkey…");
    try {
      var done = await fn();
      say(el, "Done.");
      window.location.assign(done.redirect || "/");
    } catch (err) {
      say(el, explain(err), true);
    }
  }
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    if (f.dataset.passkey === "register") { ev.preventDefault(); ev.stopPropagation(); run(f, function () { return register(f); }); }
    if (f.dataset.passkey === "add") { ev.preventDefault(); ev.stopPropagation(); run(f, function () { return addPasskey(f); }); }
    if (f.dataset.passkey === "confirm") { ev.preventDefault(); ev.stopPropagation(); run(f, function () { return confirmPayment(f); }); }
  }, true);
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("[data-passkey=signin]");
    if (b) { ev.preventDefault(); run(b.parentElement, signin); }
  });
})();
