// The playbook upload form, enhanced: a problem's "line N" link also selects that line in the
// text box (the numbered copy of the text still shows it without script), and the box says
// which line and column the caret is on, so a problem's place is easy to reach.
(function () {
  "use strict";
  var box = document.getElementById("playbook-text");
  if (!box) { return; }
  var where = document.createElement("p");
  where.className = "note";
  where.id = "caret";
  where.setAttribute("aria-live", "off");
  box.insertAdjacentElement("afterend", where);

  function lineStart(text, line) {
    var at = 0;
    for (var n = 1; n < line; n += 1) {
      var next = text.indexOf("\n", at);
      if (next < 0) { return text.length; }
      at = next + 1;
    }
    return at;
  }

  function show() {
    var before = box.value.slice(0, box.selectionStart);
    var line = before.split("\n").length;
    var column = before.length - before.lastIndexOf("\n");
    where.textContent = "Line " + line + ", column " + column;
  }

  ["keyup", "click", "input", "focus"].forEach(function (name) { box.addEventListener(name, show); });

  document.querySelectorAll("a[data-line]").forEach(function (link) {
    link.addEventListener("click", function () {
      var line = parseInt(link.getAttribute("data-line"), 10);
      var start = lineStart(box.value, line);
      var end = box.value.indexOf("\n", start);
      box.focus();
      box.setSelectionRange(start, end < 0 ? box.value.length : end);
      // Scroll the box so the line shows: lines are about one line-height apart.
      var height = parseFloat(window.getComputedStyle(box).lineHeight) || 18;
      box.scrollTop = Math.max(0, (line - 3) * height);
      show();
    });
  });
}());
