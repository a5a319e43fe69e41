"""The status page's stylesheet and script, served from the verifier itself (no CDN: the
page works offline).  Kept as text here rather than package data so an installed verifier
carries them without a packaging rule.

The script only refreshes: every ``data-refresh`` milliseconds it fetches ``data-src`` (a
fragment the server rendered and escaped, status_html.py) into ``#live``, and re-reads the
filter form when it changes.  With scripts off the page still works; it just does not move.
"""

from __future__ import annotations

STATUS_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fafafa; }
header { background: #23395d; color: #fff; padding: .6em 1em; }
header a { color: #fff; font-weight: bold; text-decoration: none; }
main { padding: 1em; }
h1 { font-size: 1.4em; margin: .2em 0; }
h2 { font-size: 1.1em; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid #ddd; padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
tr.fail td, section.fail, tr.fail > td { background: #fbd5d5; }
tr.fail td.status { color: #a40000; font-weight: bold; }
tr.pending td { background: #fff3cd; }
tr.pass td.status { color: #1d6b2f; font-weight: bold; }
.count { display: inline-block; padding: .2em .6em; margin-right: .5em; border-radius: 4px; }
.count.fail { background: #c62828; color: #fff; }
.count.pending { background: #f0ad00; }
.count.pass { background: #2e7d32; color: #fff; }
.rule, .stamp, .states { color: #555; font-size: .9em; }
form#filters { margin: .6em 1em 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dt { font-weight: bold; }
dd { margin: 0; }
code { font-family: ui-monospace, monospace; font-size: .9em; word-break: break-all; }
#failure { border-left: 4px solid #c62828; padding-left: .8em; }
"""

STATUS_JS = """
"use strict";
(function () {
  var live = document.getElementById("live");
  if (!live) { return; }
  var every = parseInt(live.getAttribute("data-refresh"), 10) || 3000;
  function refresh() {
    fetch(live.getAttribute("data-src"), {cache: "no-store"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { live.innerHTML = html; live.removeAttribute("data-stale"); })
      .catch(function () { live.setAttribute("data-stale", "1"); });
  }
  function wire() {
    var form = document.getElementById("filters");
    if (!form) { return; }
    function changed() {
      var query = new URLSearchParams(new FormData(form)).toString();
      live.setAttribute("data-src", "/fleet?" + query);
      history.replaceState(null, "", "/?" + query);
      refresh();
    }
    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    form.addEventListener("submit", function (e) { e.preventDefault(); changed(); });
  }
  wire();
  setInterval(refresh, every);
})();
"""
