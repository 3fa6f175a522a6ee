/* Legato console: progressive enhancement, hand-written. Every page works without it.
 *
 * - Confirmations: a form with data-confirm="text" asks before it is sent.
 * - Live updates: a page with elements [data-live-region][id] listens to /stream (server-sent
 *   events, signed in by the session cookie); on a change it fetches itself again and swaps
 *   those elements in, without reloading. <body data-live-updates> counts the swaps.
 * - Deferred parts: an element [data-load="/path"][id] is replaced, once the page is shown, by
 *   the element of the same id in the page at that path (a slow part does not hold the page up).
 * - window.legato: hooks for the pages' own scripts:
 *     legato.onChange(fn)       fn(eventName, data) for each event of the stream
 *     legato.post(url, fields)  a fetch POST with the session's CSRF token (X-CSRF-Token)
 *     legato.shortcut(key, fn, help)  a keyboard shortcut, ignored while typing in a field
 *     legato.refresh()          fetch the page again and swap its live regions now
 */
(function () {
  "use strict";
  var EVENTS = ["review_item", "review_item_decided", "trust_stage_changed", "stop_loss_breach",
                "agent_paused", "agent_resumed", "cycle_started", "cycle_finished"];
  var listeners = [];
  var shortcuts = {};
  var pending = null;
  var source = null;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function setState(text) {
    var el = document.querySelector("[data-live-state]");
    if (el) { el.textContent = text; }
  }

  function refresh() {
    return fetch(window.location.href, {credentials: "same-origin", headers: {"X-Console-Fetch": "1"}})
      .then(function (answer) {
        if (answer.status === 401) { setState("Your session ended: reload the page to sign in again."); return null; }
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var regions = document.querySelectorAll("[data-live-region][id]");
        for (var i = 0; i < regions.length; i++) {
          var replacement = fresh.getElementById(regions[i].id);
          if (replacement) { regions[i].innerHTML = replacement.innerHTML; }
        }
        var count = parseInt(document.body.getAttribute("data-live-updates") || "0", 10) + 1;
        document.body.setAttribute("data-live-updates", String(count));
        setState("Updated " + new Date().toLocaleTimeString() + ".");
      })
      .catch(function () { setState("Live updates paused: the server did not answer."); });
  }

  function changed(name, data) {
    for (var i = 0; i < listeners.length; i++) {
      try { listeners[i](name, data); } catch (e) { /* one page hook failing must not stop the others */ }
    }
    if (document.querySelector("[data-live-region]")) {
      if (pending) { clearTimeout(pending); }
      pending = setTimeout(function () { pending = null; refresh(); }, 300);
    }
  }

  function listen() {
    var url = document.body.getAttribute("data-live-stream");
    if (!url || !window.EventSource) { return; }
    if (!document.querySelector("[data-live-region]") && listeners.length === 0) { return; }
    source = new EventSource(url);
    source.addEventListener("open", function () {
      document.body.setAttribute("data-live", "open");
      setState("Live: changes appear as they happen.");
    });
    source.addEventListener("error", function () {
      document.body.setAttribute("data-live", "retrying");
      setState("Live updates reconnecting…");
    });
    EVENTS.forEach(function (name) {
      source.addEventListener(name, function (event) {
        var data = null;
        try { data = JSON.parse(event.data); } catch (e) { data = event.data; }
        changed(name, data);
      });
    });
  }

  function deferred() {
    var parts = document.querySelectorAll("[data-load][id]");
    Array.prototype.forEach.call(parts, function (part) {
      fetch(part.getAttribute("data-load"), {credentials: "same-origin", headers: {"X-Console-Fetch": "1"}})
        .then(function (answer) { return answer.ok ? answer.text() : null; })
        .then(function (html) {
          if (html === null) { return; }
          var found = new DOMParser().parseFromString(html, "text/html").getElementById(part.id);
          if (found) {
            part.innerHTML = found.innerHTML;
            part.removeAttribute("aria-busy");
            part.setAttribute("data-loaded", "true");
          }
        })
        .catch(function () { /* the link in the part still leads to it */ });
    });
  }

  function confirmations() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      var text = form.getAttribute && form.getAttribute("data-confirm");
      if (text && !window.confirm(text)) { event.preventDefault(); }
    });
  }

  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function keys() {
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
      var found = shortcuts[event.key];
      if (found) { event.preventDefault(); found.fn(event); }
    });
  }

  window.legato = {
    onChange: function (fn) { listeners.push(fn); if (!source) { listen(); } },
    post: function (url, fields) {
      var body = new URLSearchParams(fields || {});
      return fetch(url, {method: "POST", credentials: "same-origin", body: body,
                         headers: {"X-CSRF-Token": csrfToken(), "X-Console-Fetch": "1"}});
    },
    shortcut: function (key, fn, help) { shortcuts[key] = {fn: fn, help: help || ""}; },
    shortcuts: function () { return shortcuts; },
    refresh: refresh,
    csrfToken: csrfToken
  };

  document.addEventListener("DOMContentLoaded", function () {
    confirmations();
    keys();
    deferred();
    if (!source) { listen(); }
  });
})();
