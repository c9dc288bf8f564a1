// civstack live lists: a part of a page marked data-live refreshes itself
// (htmx polling, e.g. the point of sale's sales every 2 seconds). A refresh
// replaces the forms inside it, so it waits while someone is using one:
// while the focus is inside the list, or while a field there holds
// something typed and not sent. Otherwise a refund amount being typed
// would be put back to the full amount under the merchant's fingers.
(function () {
  "use strict";

  function busy(list) {
    var a = document.activeElement;
    if (a && a !== document.body && list.contains(a)) return true;
    var fields = list.querySelectorAll("input, select, textarea");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === "hidden") continue;
      if (f.value !== f.defaultValue) return true;
    }
    return false;
  }

  document.addEventListener("htmx:beforeRequest", function (ev) {
    var el = ev.detail && ev.detail.elt;
    if (!el || !el.hasAttribute || !el.hasAttribute("data-live")) return;
    if (busy(el)) ev.preventDefault();
  });
})();
