// Berth dashboard: live regions and log follow. Pages are drawn on the
// server; this only redraws their [data-live] regions when the API's watch
// (relayed at /ui/live) names something the page shows, and follows logs.
(function () {
  'use strict';
  var body = document.body;
  var watch = (body.getAttribute('data-watch') || '').split(/\s+/).filter(Boolean);
  var metrics = body.getAttribute('data-metrics') === '1';
  var env = body.getAttribute('data-env') || '';
  var status = document.getElementById('live-status');
  var timer = null, busy = false, again = false;

  function setStatus(s) { if (status) status.textContent = s; }

  function matches(ev) {
    if (ev.kind === '*') return true;
    return watch.some(function (w) {
      var i = w.indexOf(':'), k = w.slice(0, i), n = w.slice(i + 1);
      return (k === '*' || k === ev.kind) && (n === '*' || n === ev.name);
    });
  }

  function schedule() {
    if (!timer) timer = setTimeout(refresh, 200);
  }

  function refresh() {
    timer = null;
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { headers: { 'X-Berth-Live': '1' }, credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401) { location.reload(); return null; }
        return r.text();
      })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, 'text/html');
        document.querySelectorAll('[data-live]').forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML) el.innerHTML = fresh.innerHTML;
        });
        body.setAttribute('data-refreshes', String(Number(body.getAttribute('data-refreshes') || 0) + 1));
      })
      .catch(function () { /* the next change tries again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  }

  if ((watch.length || metrics) && window.EventSource) {
    var es = new EventSource('/ui/live' + (env ? '?env=' + encodeURIComponent(env) : ''));
    es.addEventListener('change', function (e) {
      if (matches(JSON.parse(e.data))) schedule();
    });
    es.addEventListener('resync', schedule);
    if (metrics) es.addEventListener('metrics', schedule);
    es.addEventListener('expired', function () { es.close(); location.reload(); });
    es.onopen = function () { setStatus('● live'); body.setAttribute('data-live-open', '1'); };
    es.onerror = function () { setStatus('reconnecting…'); };
  }

  // Logs: follow streams the last lines again, then new ones as they come.
  var logs = document.getElementById('log-lines');
  var follow = document.getElementById('follow');
  var logError = document.getElementById('log-error');
  var count = document.getElementById('log-count');
  if (logs && follow) {
    var src = null, retry = null;
    var append = function (line) {
      var atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 8;
      var div = document.createElement('div');
      div.textContent = line;
      logs.appendChild(div);
      while (logs.childElementCount > 5000) logs.removeChild(logs.firstChild);
      if (atEnd) logs.scrollTop = logs.scrollHeight;
      if (count) count.textContent = logs.childElementCount + ' lines';
    };
    var stop = function () {
      if (src) { src.close(); src = null; }
      if (retry) { clearTimeout(retry); retry = null; }
      logs.setAttribute('aria-busy', 'false');
    };
    var start = function () {
      stop();
      while (logs.firstChild) logs.removeChild(logs.firstChild);
      if (logError) logError.hidden = true;
      src = new EventSource(logs.getAttribute('data-stream'));
      logs.setAttribute('aria-busy', 'true');
      src.onopen = function () { logs.setAttribute('data-following', '1'); };
      src.onmessage = function (e) { append(e.data); };
      src.addEventListener('apierror', function (e) {
        var err = JSON.parse(e.data);
        stop();
        follow.checked = false;
        if (logError) {
          logError.hidden = false;
          logError.querySelector('.kind').textContent = err.kind;
          logError.querySelector('.message').textContent = err.message;
        }
      });
      src.onerror = function () {
        // Start over (the tail again) rather than let EventSource resend
        // the whole tail on top of what is shown.
        stop();
        retry = setTimeout(function () { if (follow.checked) start(); }, 3000);
      };
    };
    follow.addEventListener('change', function () { if (follow.checked) start(); else stop(); });
    if (follow.checked) start();
    logs.scrollTop = logs.scrollHeight;
  }
})();
