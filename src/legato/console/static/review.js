/* Legato console, the review pages: keyboard shortcuts and checking an edit as one types.
 * Hand-written; every page works without it (links, forms and the Check button).
 *
 * - The list: j/k select the next/previous row (announced), Enter opens it.
 * - An item: j/k go to the next/previous item of the filtered queue, a approves, r chooses a
 *   reason to reject, e opens the editor; ? shows the shortcuts. Each is announced in
 *   #review-announce (a polite live region) before it acts.
 * - The editor: a draft is posted to /review/{id}/check (CSRF header, via legato.post) 400 ms
 *   after the last key, and the findings it answers replace #draft-result.
 */
(function () {
  "use strict";

  function announce(text) {
    var el = document.getElementById("review-announce");
    if (el) { el.textContent = text; }
  }

  function shortcut(key, fn, help) {
    if (window.legato && window.legato.shortcut) { window.legato.shortcut(key, fn, help); return; }
    document.addEventListener("keydown", function (event) {
      var tag = (event.target && event.target.tagName) || "";
      if (event.ctrlKey || event.metaKey || event.altKey || tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") { return; }
      if (event.key === key) { event.preventDefault(); fn(event); }
    });
  }

  function toggleHelp() {
    var help = document.getElementById("review-shortcuts");
    if (!help) { return; }
    help.open = !help.open;
    if (help.open) { help.querySelector("summary").focus(); }
    announce(help.open ? "Keyboard shortcuts shown." : "Keyboard shortcuts hidden.");
  }

  function list(table) {
    var rows = Array.prototype.slice.call(table.querySelectorAll("tr[data-review-row]"));
    var at = -1;
    function select(index) {
      if (!rows.length) { announce("The queue is empty."); return; }
      index = Math.max(0, Math.min(rows.length - 1, index));
      if (at >= 0) { rows[at].removeAttribute("aria-selected"); rows[at].classList.remove("selected"); }
      at = index;
      var row = rows[at];
      row.setAttribute("aria-selected", "true");
      row.classList.add("selected");
      var link = row.querySelector("a[data-open]");
      if (link) { link.focus(); }
      announce("Item " + row.getAttribute("data-item") + ", " + (at + 1) + " of " + rows.length + ". Enter opens it.");
    }
    shortcut("j", function () { select(at + 1); }, "next item");
    shortcut("k", function () { select(at < 0 ? 0 : at - 1); }, "previous item");
    shortcut("?", toggleHelp, "show the shortcuts");
  }

  function go(href, text) {
    if (!href) { announce(text); return; }
    announce(text);
    window.location.assign(href);
  }

  function item(head) {
    shortcut("j", function () { go(head.getAttribute("data-next"), head.getAttribute("data-next") ? "Opening the next item." : "This is the last item of the queue."); }, "next item");
    shortcut("k", function () { go(head.getAttribute("data-prev"), head.getAttribute("data-prev") ? "Opening the previous item." : "This is the first item of the queue."); }, "previous item");
    shortcut("?", toggleHelp, "show the shortcuts");
    shortcut("a", function () {
      var form = document.querySelector("form[data-approve]");
      if (!form) { announce("This item cannot be approved."); return; }
      announce("Approving item " + head.getAttribute("data-review-item") + ".");
      form.requestSubmit ? form.requestSubmit() : form.submit();
    }, "approve");
    shortcut("r", function () {
      var reason = document.querySelector("select[data-reject-reason]");
      if (!reason) { announce("This item cannot be rejected."); return; }
      reason.focus();
      announce("Choose a reason to reject, then press the Reject button.");
    }, "reject");
    shortcut("e", function () {
      var edit = document.querySelector("details[data-edit]");
      if (!edit) { announce("This message cannot be edited."); return; }
      edit.open = true;
      var body = edit.querySelector("textarea[name=body]");
      if (body) { body.focus(); }
      announce("Editing the message: it is checked as you type.");
    }, "edit");
  }

  function editor(form) {
    var result = document.getElementById("draft-result");
    var url = form.getAttribute("data-check-url");
    var timer = null;
    var asked = 0;
    function check() {
      var fields = {};
      var subject = form.querySelector("[name=subject]");
      var body = form.querySelector("[name=body]");
      if (subject) { fields.subject = subject.value; }
      if (body) { fields.body = body.value; }
      var mine = ++asked;
      form.setAttribute("data-checking", "true");
      window.legato.post(url, fields).then(function (answer) {
        return answer.text().then(function (html) { return {status: answer.status, html: html}; });
      }).then(function (got) {
        if (mine !== asked) { return; }  // a later draft is on its way: keep only its answer
        form.removeAttribute("data-checking");
        if (got.status === 401) { result.textContent = "Your session ended: reload the page to sign in again."; return; }
        var fresh = new DOMParser().parseFromString(got.html, "text/html").querySelector("[data-draft-check]");
        result.innerHTML = "";
        if (fresh) { result.appendChild(document.importNode(fresh, true)); }
        var checks = parseInt(form.getAttribute("data-checks") || "0", 10) + 1;
        form.setAttribute("data-checks", String(checks));
      }).catch(function () {
        form.removeAttribute("data-checking");
        result.textContent = "The check did not answer; use the Check button.";
      });
    }
    form.addEventListener("input", function (event) {
      if (!event.target.hasAttribute("data-draft")) { return; }
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(check, 400);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var table = document.querySelector("table[data-review-queue]");
    if (table) { list(table); }
    var head = document.querySelector("[data-review-item]");
    if (head) { item(head); }
    var form = document.querySelector("form[data-edit-form]");
    if (form && window.legato && window.legato.post) { editor(form); }
  });
})();
