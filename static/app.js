// countersign approver pages: runs the passkey ceremonies against the approver JSON API
// (API.md "Approver API") and shows times in the viewer's time zone. Pages are rendered by the
// server from its own state; this script never builds what is approved, it only posts
// "approve" or "reject" and the passkey's signature, then reloads the server's page. The inbox
// and request pages follow the server's live events and re-read themselves from the server.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // ---- talking to the server -------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || `HTTP ${status}`);
      this.name = "ApiError";
      this.status = status;
      this.code = (problem && problem.code) || `http_${status}`;
      this.problem = problem || {};
    }
  }

  async function post(path, body) {
    let res;
    try {
      res = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body || {}),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, { code: "network", detail: String(e) });
    }
    if (res.status === 204) return null;
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = null;
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // ---- WebAuthn JSON forms (with a fallback for browsers without the L3 helpers) --------

  const b64urlToBuf = (s) => {
    const pad = "=".repeat((4 - (s.length % 4)) % 4);
    const bin = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
    return out.buffer;
  };
  const bufToB64url = (buf) => {
    const bytes = new Uint8Array(buf);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 1) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const withIds = (list) => (list || []).map((c) => ({ ...c, id: b64urlToBuf(c.id) }));

  function creationOptions(json) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: b64urlToBuf(json.challenge),
      user: { ...json.user, id: b64urlToBuf(json.user.id) },
      excludeCredentials: withIds(json.excludeCredentials),
    };
  }

  function requestOptions(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return { ...json, challenge: b64urlToBuf(json.challenge), allowCredentials: withIds(json.allowCredentials) };
  }

  function credentialJSON(cred) {
    if (typeof cred.toJSON === "function") return cred.toJSON();
    const r = cred.response;
    const response = { clientDataJSON: bufToB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = bufToB64url(r.attestationObject);
      if (typeof r.getTransports === "function") response.transports = r.getTransports();
    } else {
      response.authenticatorData = bufToB64url(r.authenticatorData);
      response.signature = bufToB64url(r.signature);
      if (r.userHandle) response.userHandle = bufToB64url(r.userHandle);
    }
    return {
      id: cred.id,
      rawId: bufToB64url(cred.rawId),
      type: cred.type,
      response,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults(),
    };
  }

  const passkeysSupported = () =>
    typeof window.PublicKeyCredential === "function" && !!navigator.credentials;

  // ---- messages a finance approver can act on --------------------------------------------

  const NOTHING = "Nothing was approved or rejected.";

  function explain(err, context) {
    // Errors from the browser's passkey prompt.
    if (err && err.name === "NotAllowedError") {
      return context === "enroll"
        ? "The passkey prompt was cancelled or timed out. Nothing was saved; you can try again."
        : context === "signin"
          ? "The passkey prompt was cancelled or timed out. You are not signed in; you can try again."
          : `The passkey check was cancelled or timed out. ${NOTHING} You can try again.`;
    }
    if (err && err.name === "InvalidStateError") {
      return "This device already holds a passkey for your account. Sign in with it instead.";
    }
    if (err && err.name === "NotSupportedError") {
      return "This browser or device cannot create a passkey that needs a PIN, fingerprint or face. Try another browser or a security key.";
    }
    if (err && err.name === "SecurityError") {
      return "The browser refused to use a passkey on this address. Open countersign at its official address.";
    }
    if (err && err.name === "AbortError") {
      return "The passkey check was interrupted. You can try again.";
    }
    const status = err && err.problem ? err.problem.approval_status : undefined;
    switch (err && err.code) {
      case "self_approval_forbidden":
        return `You started this request, so someone else has to approve or reject it. ${NOTHING}`;
      case "not_eligible":
        return `You are not in a group that may decide this request. ${NOTHING}`;
      case "already_decided":
        return "You have already decided this request. Reload the page to see where it stands.";
      case "not_pending":
        if (status === "expired") return `This request has expired: it can no longer be decided. ${NOTHING}`;
        if (status === "approved") return "This request was already approved by others. Reload the page to see the outcome.";
        if (status === "rejected") return "This request was already rejected by someone else. Reload the page to see the outcome.";
        if (status === "cancelled") return `The requesting system withdrew this request. ${NOTHING}`;
        if (status === "revoked") return `This request was approved, then revoked by the requesting system. ${NOTHING}`;
        return `This request is no longer waiting for a decision. ${NOTHING}`;
      case "ceremony_expired":
        return `The passkey check took too long. ${NOTHING} Please try again.`;
      case "ceremony_consumed":
      case "ceremony_mismatch":
        return `That passkey check was already used. ${NOTHING} Please try again.`;
      case "user_verification_required":
        return `Your passkey did not confirm it is you (PIN, fingerprint or face). ${NOTHING}`;
      case "assertion_invalid":
        return `Your passkey's answer could not be verified. ${NOTHING} Please try again.`;
      case "possible_clone":
        return "This passkey has been blocked because it may have been copied. Contact your administrator; do not use it again.";
      case "credential_not_allowed":
        return `This passkey cannot be used for this decision (it may have been revoked). ${NOTHING} Use the passkey you enrolled, or ask your administrator.`;
      case "authentication_failed":
        return "Sign-in failed. Use a passkey you set up for countersign, and try again.";
      case "unauthorized":
        return "Your session has ended. Reload the page and sign in again.";
      case "bad_origin":
        return "This page's address does not match the server's. Open countersign at its official address.";
      case "rate_limited":
        return "Too many attempts in a short time. Wait a minute, then try again.";
      case "lockout":
        return "This change would leave an action without enough people to approve it, so it was not made.";
      case "invitation_used":
        return "This invitation link was already used. If you just set up your passkey, sign in. If not, tell your administrator now.";
      case "invitation_expired":
        return "This invitation link has expired. Ask your administrator for a new one.";
      case "not_found":
        return context === "enroll"
          ? "This invitation link is not valid. Ask your administrator for a new one."
          : "This request no longer exists.";
      case "invalid_request":
        return context === "enroll" ? "Give the passkey a name of 1 to 64 characters." : `The request was refused: ${err.message}`;
      case "unsupported_algorithm":
        return "This passkey uses a signature type countersign does not accept. Try another device or security key.";
      case "registration_invalid":
        return "The passkey could not be verified. Nothing was saved; please try again.";
      case "credential_exists":
        return "This passkey is already registered. Sign in with it.";
      case "store_unavailable":
        return `The server cannot reach its database right now. ${context === "decide" ? NOTHING + " " : ""}Try again in a minute.`;
      case "network":
        return `The server could not be reached. Check your connection. ${context === "decide" ? NOTHING : ""}`.trim();
      default:
        return `Something went wrong${err && err.code ? ` (${err.code})` : ""}. ${context === "decide" ? NOTHING + " " : ""}Please try again.`;
    }
  }

  function say(el, text, kind) {
    if (!el) return;
    el.textContent = text || "";
    el.classList.remove("is-error", "is-ok", "is-busy");
    if (text && kind) el.classList.add(`is-${kind}`);
  }

  // ---- times -----------------------------------------------------------------------------

  // Explicit parts: dateStyle/timeStyle cannot be combined with timeZoneName, and the zone
  // must show so that a local time is never mistaken for UTC.
  const localFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    timeZoneName: "short",
  });
  const pad = (n) => String(n).padStart(2, "0");
  const utcText = (d) =>
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;

  function localiseTimes() {
    for (const t of $$("time.js-local")) {
      const d = new Date(t.getAttribute("datetime"));
      if (Number.isNaN(d.getTime())) continue;
      t.textContent = localFormat.format(d);
      t.hidden = false;
    }
    // Datetime fields of a transaction: local time first, UTC beside it, the value as sent below.
    for (const t of $$("time.js-field-dt")) {
      const sent = t.getAttribute("datetime");
      const d = new Date(sent);
      if (Number.isNaN(d.getTime())) continue;
      t.textContent = localFormat.format(d);
      const utc = document.createElement("span");
      utc.className = "dt-utc";
      utc.textContent = `${utcText(d)} · sent as ${sent}`;
      t.after(utc);
    }
  }

  function spanText(s) {
    if (s < 60) return `${s} s`;
    if (s < 3600) return s < 600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 60)} min`;
    if (s < 86400) {
      const h = Math.floor(s / 3600);
      const m = Math.floor((s % 3600) / 60);
      return m ? `${h} h ${m} min` : `${h} h`;
    }
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    return h ? `${d} d ${h} h` : `${d} d`;
  }

  // Counts down from the server's own "seconds left" (not the browser's clock, which may be
  // wrong); the server stays the judge of expiry.
  let countdownTimer = null;
  function countdowns() {
    if (countdownTimer !== null) clearInterval(countdownTimer);
    countdownTimer = null;
    const clocks = $$("[data-seconds-left]");
    if (!clocks.length) return;
    const started = Date.now();
    const tick = () => {
      const elapsed = Math.floor((Date.now() - started) / 1000);
      for (const c of clocks) {
        if (c.dataset.closed) continue;
        const left = Math.max(0, Number(c.dataset.secondsLeft) - elapsed);
        c.textContent = left > 0 ? `${spanText(left)} left` : "Expired";
        c.classList.toggle("is-urgent", left < 300);
        if (left === 0 && c.id === "time-left") expiredOnPage();
      }
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
  }

  function expiredOnPage() {
    const actions = $("#decide-actions");
    if (!actions || actions.dataset.expired) return;
    actions.dataset.expired = "1";
    for (const b of $$("button", actions)) b.disabled = true;
    say($("#decide-status"), `Time is up: this request can no longer be decided. ${NOTHING}`, "error");
  }

  // The server said the request is no longer pending: show its word for the state instead of
  // a countdown that no longer means anything.
  const STATUS_LABELS = { approved: "Approved", rejected: "Rejected", expired: "Expired", cancelled: "Cancelled", revoked: "Revoked" };
  function closedByServer(state) {
    const label = STATUS_LABELS[state];
    const pill = $("#status");
    if (label && pill) {
      pill.textContent = label;
      pill.className = `pill pill-${state}`;
    }
    const clock = $("#time-left");
    if (clock) {
      clock.dataset.closed = "1";
      clock.textContent = "No longer open";
      clock.classList.remove("is-urgent");
    }
  }

  // ---- sign-out (every signed-in page) ---------------------------------------------------

  function signOut() {
    const btn = $("#sign-out");
    if (!btn) return;
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        await post("/v1/session/logout", {});
      } catch (e) {
        // The cookie may already be gone; the sign-in page is the right place either way.
      }
      window.location.assign("/");
    });
  }

  // ---- sign-in -----------------------------------------------------------------------------

  function signInPage() {
    const form = $("#signin-form");
    const status = $("#signin-status");
    const button = $("#signin-button");
    const username = $("#username");
    const next = form.dataset.next || "/";
    let conditional = null;
    let busy = false;

    if (!passkeysSupported()) {
      button.disabled = true;
      say(status, "This browser does not support passkeys. Use a current version of Chrome, Edge, Firefox or Safari.", "error");
      return;
    }

    async function finish(ceremony, cred) {
      busy = true;
      say(status, "Signing you in…", "busy");
      await post("/v1/session/finish", { ceremony, credential: credentialJSON(cred) });
      say(status, "Signed in.", "ok");
      window.location.assign(next);
    }

    // Conditional UI: the browser offers passkeys in the username field's autofill.
    async function startConditional() {
      if (typeof PublicKeyCredential.isConditionalMediationAvailable !== "function") return;
      let available = false;
      try {
        available = await PublicKeyCredential.isConditionalMediationAvailable();
      } catch (e) {
        available = false;
      }
      if (!available || busy) return;
      const abort = new AbortController();
      conditional = abort;
      try {
        const opts = await post("/v1/session/options", {});
        const cred = await navigator.credentials.get({
          mediation: "conditional",
          publicKey: requestOptions(opts.publicKey),
          signal: abort.signal,
        });
        if (!cred || busy) return;
        await finish(opts.ceremony, cred);
      } catch (e) {
        // The person did not ask for this ceremony: a browser that ends it (no passkey here,
        // the button took over) is not an error to show. A refused sign-in after they picked
        // a passkey from the autofill is.
        if (abort.signal.aborted || (e && (e.name === "AbortError" || e.name === "NotAllowedError"))) return;
        busy = false;
        say(status, explain(e, "signin"), "error");
      } finally {
        if (conditional === abort) conditional = null;
      }
    }

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (busy) return;
      busy = true;
      if (conditional) conditional.abort();
      button.disabled = true;
      say(status, "Waiting for your passkey…", "busy");
      try {
        const name = username.value.trim();
        const opts = await post("/v1/session/options", name ? { username: name } : {});
        const cred = await navigator.credentials.get({ publicKey: requestOptions(opts.publicKey) });
        if (!cred) throw Object.assign(new Error("no credential"), { name: "NotAllowedError" });
        await finish(opts.ceremony, cred);
      } catch (e) {
        busy = false;
        button.disabled = false;
        say(status, explain(e, "signin"), "error");
        startConditional();
      }
    });

    startConditional();
  }

  // ---- enrolment -----------------------------------------------------------------------------

  function enrollPage() {
    const form = $("#enroll-form");
    const status = $("#enroll-status");
    const button = $("#enroll-button");
    const label = $("#label");
    const token = form.dataset.token;

    if (!passkeysSupported()) {
      button.disabled = true;
      say(status, "This browser does not support passkeys. Use a current version of Chrome, Edge, Firefox or Safari.", "error");
      return;
    }

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = label.value.trim();
      if (!name || name.length > 64) {
        say(status, "Give the passkey a name of 1 to 64 characters, such as “Work laptop”.", "error");
        label.setAttribute("aria-invalid", "true");
        label.focus();
        return;
      }
      label.removeAttribute("aria-invalid");
      button.disabled = true;
      say(status, "Follow your browser's prompt to create the passkey…", "busy");
      try {
        const base = `/v1/enroll/${encodeURIComponent(token)}`;
        const opts = await post(`${base}/options`, {});
        const cred = await navigator.credentials.create({ publicKey: creationOptions(opts.publicKey) });
        if (!cred) throw Object.assign(new Error("no credential"), { name: "NotAllowedError" });
        say(status, "Saving your passkey…", "busy");
        await post(`${base}/finish`, { ceremony: opts.ceremony, credential: credentialJSON(cred), label: name });
        $("#enroll-done-label").textContent = name;
        form.hidden = true;
        const done = $("#enroll-done");
        done.hidden = false;
        done.focus();
      } catch (e) {
        button.disabled = false;
        say(status, explain(e, "enroll"), "error");
      }
    });
  }

  // ---- deciding ------------------------------------------------------------------------------

  function approvalPage() {
    const panel = $("#decide");
    const actions = $("#decide-actions");
    if (!panel || !actions) return;
    const id = panel.dataset.id;
    const status = $("#decide-status");
    const buttons = $$("button[data-decision]", actions);

    if (!passkeysSupported()) {
      for (const b of buttons) b.disabled = true;
      say(status, "This browser does not support passkeys, so you cannot decide here. Use a current version of Chrome, Edge, Firefox or Safari.", "error");
      return;
    }

    let busy = false;
    for (const b of buttons) {
      b.addEventListener("click", async () => {
        if (busy) return;
        busy = true;
        live.ceremony(true);
        const decision = b.dataset.decision;
        const word = decision === "approve" ? "approve" : "reject";
        for (const other of buttons) other.disabled = true;
        say(status, `Confirm with your passkey to ${word.toUpperCase()} this request…`, "busy");
        try {
          const base = `/v1/approvals/${encodeURIComponent(id)}/decision`;
          const opts = await post(`${base}/options`, { decision });
          const cred = await navigator.credentials.get({ publicKey: requestOptions(opts.publicKey) });
          if (!cred) throw Object.assign(new Error("no credential"), { name: "NotAllowedError" });
          say(status, "Recording your decision…", "busy");
          const after = await post(`${base}/finish`, { ceremony: opts.ceremony, credential: credentialJSON(cred) });
          const outcome =
            after && after.status === "approved"
              ? "Approved. The request has all the approvals it needs."
              : after && after.status === "rejected"
                ? "Rejected. The request will not be carried out."
                : decision === "approve"
                  ? "Your approval is recorded. Waiting for others."
                  : "Your rejection is recorded.";
          say(status, `${outcome} Updating the page…`, "ok");
          // Show the server's own view of the request from now on.
          window.location.reload();
        } catch (e) {
          busy = false;
          live.ceremony(false);
          say(status, explain(e, "decide"), "error");
          if (e && e.code === "not_pending") closedByServer(e.problem.approval_status);
          const settled = e && (e.code === "not_pending" || e.code === "already_decided" || e.code === "self_approval_forbidden" || e.code === "not_eligible" || e.code === "possible_clone");
          if (!settled && !actions.dataset.expired) for (const other of buttons) other.disabled = false;
        }
      });
    }
  }

  // ---- live updates (inbox and request pages) -------------------------------------------------

  // The server tells the page that something it shows changed (GET /v1/me/events, API.md "Live
  // pages"); the event is only a hint: the page fetches its own HTML from the server again and
  // swaps in the new main content, without a reload. Never while a passkey ceremony runs on the
  // page: the refresh waits until it ends.
  const live = (() => {
    let inCeremony = false;
    let held = null; // the message of a refresh held back by a ceremony
    let running = false;
    let again = null;
    let note = null;
    let noteTimer = null;

    function announce(text) {
      if (!note || !text) return;
      say(note, text, "info");
      if (noteTimer !== null) clearTimeout(noteTimer);
      noteTimer = setTimeout(() => say(note, "", null), 8000);
    }

    function keepFocus(main) {
      const el = document.activeElement;
      if (!el || el === document.body || !main.contains(el)) return () => {};
      const id = el.id;
      const href = el.getAttribute && el.getAttribute("href");
      return () => {
        const back = (id && document.getElementById(id)) || (href && $(`#main a[href="${CSS.escape(href)}"]`));
        if (back) back.focus();
      };
    }

    async function refresh(message) {
      if (inCeremony) {
        held = message;
        return;
      }
      if (running) {
        again = message;
        return;
      }
      running = true;
      try {
        const res = await fetch(window.location.href, {
          credentials: "same-origin",
          cache: "no-store",
          headers: { Accept: "text/html" },
        });
        if (!res.ok) return;
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        const fresh = doc.getElementById("main");
        const main = document.getElementById("main");
        if (!fresh || !main) return;
        if (doc.body.dataset.page !== document.body.dataset.page) {
          // Signed out meanwhile: the server answered with another page.
          announce("Your session has ended. Reload the page to sign in again.");
          return;
        }
        if (inCeremony) {
          held = message;
          return;
        }
        const restore = keepFocus(main);
        // Why the person's last attempt failed stays in view beside the fresh state.
        const failed = $("#decide-status.is-error");
        const why = failed ? failed.textContent : "";
        // A copy first: adopting a node takes it out of the live child list.
        const nodes = Array.from(fresh.childNodes);
        main.replaceChildren(note, ...nodes.map((n) => document.adoptNode(n)));
        document.title = doc.title;
        bind();
        if (why) say($("#decide-status"), why, "error");
        restore();
        document.body.dataset.liveRefreshes = String(Number(document.body.dataset.liveRefreshes || 0) + 1);
        announce(message);
      } catch (e) {
        // The next event, or a reload, shows the news; the page as shown stays.
      } finally {
        running = false;
        if (again !== null) {
          const next = again;
          again = null;
          refresh(next);
        }
      }
    }

    function message(page, ev, own) {
      const status = ev.status || "";
      switch (ev.change) {
        case "arrived":
          return page === "inbox" ? "A new request arrived." : "";
        case "decision":
          return own ? "Decided by someone else: a decision was recorded on this request." : "A request was decided by someone else.";
        case "status":
          return own ? `This request is now ${status}.` : `A request is now ${status}.`;
        default:
          return "This page was updated.";
      }
    }

    function start() {
      const page = document.body.dataset.page;
      if (page !== "inbox" && page !== "approval") return;
      if (typeof window.EventSource !== "function") return;
      const main = document.getElementById("main");
      if (!main) return;
      note = document.createElement("p");
      note.id = "live-note";
      note.className = "status live-note";
      note.setAttribute("role", "status");
      note.setAttribute("aria-live", "polite");
      main.prepend(note);
      const shown = page === "approval" ? decodeURIComponent(window.location.pathname.split("/").pop() || "") : null;
      const source = new EventSource("/v1/me/events");
      source.addEventListener("open", () => {
        document.body.dataset.live = "open";
      });
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) {
          document.body.dataset.live = "closed";
          announce("Live updates stopped: your session may have ended. Reload the page to see where things stand.");
        } else {
          document.body.dataset.live = "reconnecting";
        }
      });
      source.addEventListener("message", (e) => {
        let ev;
        try {
          ev = JSON.parse(e.data);
        } catch (err) {
          return;
        }
        const own = shown !== null && ev.approval_id === shown;
        // The request page cares about changes to its request (and a resync); the inbox about
        // everything.
        if (shown !== null && ev.change !== "resync" && (!own || ev.change === "arrived")) return;
        refresh(message(page, ev, own));
      });
    }

    return {
      start,
      // A passkey ceremony starts (true) or ends without leaving the page (false).
      ceremony(on) {
        inCeremony = on;
        if (!on && held !== null) {
          const m = held;
          held = null;
          refresh(m);
        }
      },
    };
  })();

  // ---- the admin console: every form proposes a change ------------------------------------

  // A form marked data-op becomes {"op": …, its fields}: inputs marked data-list are
  // comma-separated lists, checkboxes booleans, empty optional fields left out. The server
  // parses and checks the change; this only carries it, then opens the change's page.
  function changeOf(form) {
    const change = { op: form.dataset.op };
    for (const el of $$("input[name], select[name]", form)) {
      if (el.type === "checkbox") change[el.name] = el.checked;
      else if (el.hasAttribute("data-list")) {
        change[el.name] = el.value.split(/[\s,]+/).filter((v) => v !== "");
      } else if (el.value.trim() !== "") change[el.name] = el.value.trim();
    }
    return change;
  }

  function consoleForms() {
    for (const form of $$("form[data-op]")) {
      const error = $(".form-error", form);
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const button = $("button[type=submit]", form);
        button.disabled = true;
        if (error) error.hidden = true;
        try {
          const made = await post("/v1/admin/changes", changeOf(form));
          window.location.assign(`/admin/changes/${encodeURIComponent(made.id)}`);
        } catch (e) {
          button.disabled = false;
          if (error) {
            error.textContent = (e.problem && e.problem.detail) || explain(e);
            error.hidden = false;
          }
        }
      });
    }
  }

  // ---- start ---------------------------------------------------------------------------------

  // What the main content needs, on load and again after a live refresh.
  function bind() {
    localiseTimes();
    countdowns();
    if (document.body.dataset.page === "approval") approvalPage();
  }

  function start() {
    signOut();
    switch (document.body.dataset.page) {
      case "signin":
        localiseTimes();
        countdowns();
        signInPage();
        break;
      case "enroll":
        localiseTimes();
        countdowns();
        enrollPage();
        break;
      default:
        bind();
        consoleForms();
        break;
    }
    live.start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
