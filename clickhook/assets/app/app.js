// clickhook's dashboard: the only script of its own. Pages work without it; it adds new clicks
// to the Clicks page as the server pushes them (server-sent events carrying table rows that
// the server rendered and escaped).
(function () {
  "use strict";
  var open = null;

  function follow() {
    var body = document.querySelector("tbody[data-stream]");
    if (open && (!body || open.body !== body)) {
      open.source.close();
      open = null;
    }
    if (!body || open || !window.EventSource) return;
    var source = new EventSource(body.getAttribute("data-stream"));
    source.addEventListener("click", function (e) {
      body.insertAdjacentHTML("afterbegin", e.data);
      while (body.rows.length > 200) body.deleteRow(-1);
    });
    open = { source: source, body: body };
  }

  // htmx swaps pages in place (hx-boost): look again after every swap.
  if (window.htmx) window.htmx.onLoad(follow);
  else document.addEventListener("DOMContentLoaded", follow);
})();
