// Keeps the relay's class overview current without a reload (relay/live.py says why it polls).
// Plain, strict JavaScript, served as is: no build step. Without it the page is the same page,
// only still. It asks the page's "live" URL with the page's own query string (sort, filters:
// whatever the page reads, this passes on unread), swaps in the rows that changed, keeps the
// keyboard focus where it was, announces changes of state politely, pauses while the tab is
// hidden and waits longer after each failure.
(function () {
  'use strict';

  var EVERY_MS = 5000; // the servers forward time every 15 s; a few seconds' lag shows nothing
  var LONGEST_MS = 60000; // the longest wait after failures
  var ANNOUNCED_AT_MOST = 5; // changes read out at once; the rest are counted

  var script = document.currentScript;
  var table = document.getElementById('overview');
  if (!script || !table || !table.tBodies.length || !window.fetch) {
    return;
  }
  var url = script.getAttribute('data-live') + window.location.search;
  var xsrf = script.getAttribute('data-xsrf') || '';
  var body = table.tBodies[0];
  var delay = EVERY_MS;
  var timer = null;
  var asking = false;
  var stopped = false;

  // What the script says: a plain line (not read out on every update) and a polite live region
  // for changes of state only.
  var status = document.createElement('p');
  status.id = 'live-status';
  var announcer = document.createElement('p');
  announcer.id = 'live-announce';
  announcer.setAttribute('role', 'status');
  announcer.setAttribute('aria-live', 'polite');
  // Visually hidden, still read (set through the CSSOM: the page's policy allows no inline
  // style attribute from script).
  announcer.style.position = 'absolute';
  announcer.style.width = '1px';
  announcer.style.height = '1px';
  announcer.style.overflow = 'hidden';
  announcer.style.clipPath = 'inset(50%)';
  announcer.style.whiteSpace = 'nowrap';
  table.parentNode.insertBefore(status, table);
  table.parentNode.insertBefore(announcer, table);

  function two(n) {
    return (n < 10 ? '0' : '') + n;
  }

  function clock(date) {
    return two(date.getHours()) + ':' + two(date.getMinutes()) + ':' + two(date.getSeconds());
  }

  function say(text) {
    status.textContent = text;
  }

  function parse(html) {
    var template = document.createElement('template');
    template.innerHTML = html;
    return template.content;
  }

  function keyOf(row) {
    var head = row.cells.length ? row.cells[0] : null;
    return head ? head.textContent.trim() : '';
  }

  function stateOf(cell) {
    var match = /(?:^|\s)state-(\S+)/.exec(cell.className);
    return match ? match[1].replace(/-/g, ' ') : '';
  }

  function headings() {
    var cells = table.tHead ? table.tHead.rows[0].cells : [];
    return Array.prototype.map.call(cells, function (cell) {
      return cell.textContent.trim();
    });
  }

  // Where the focus is inside the body, as (row key, cell index), to put it back after a swap.
  function focusPlace() {
    var active = document.activeElement;
    if (!active || !body.contains(active)) {
      return null;
    }
    var cell = active.closest('td, th');
    var row = active.closest('tr');
    return row && cell ? { key: keyOf(row), index: cell.cellIndex } : null;
  }

  function restoreFocus(place) {
    if (!place || body.contains(document.activeElement)) {
      return;
    }
    Array.prototype.some.call(body.rows, function (row) {
      if (keyOf(row) !== place.key || !row.cells[place.index]) {
        return false;
      }
      var cell = row.cells[place.index];
      var target = cell.querySelector('a, button, [tabindex]') || cell;
      if (target === cell) {
        cell.setAttribute('tabindex', '-1');
      }
      target.focus({ preventScroll: true });
      return true;
    });
  }

  function changesOf(oldRows, newRows) {
    var labels = headings();
    var before = {};
    Array.prototype.forEach.call(oldRows, function (row) {
      before[keyOf(row)] = row;
    });
    var changes = [];
    Array.prototype.forEach.call(newRows, function (row) {
      var old = before[keyOf(row)];
      if (!old) {
        return;
      }
      Array.prototype.forEach.call(row.cells, function (cell, i) {
        var was = old.cells[i] ? stateOf(old.cells[i]) : '';
        var now = stateOf(cell);
        if (now && was !== now) {
          changes.push(keyOf(row) + ', ' + (labels[i] || 'column ' + (i + 1)) + ': ' + now);
        }
      });
    });
    return changes;
  }

  function replaceRows(html) {
    var fresh = parse(html).querySelectorAll('tr');
    var rows = body.rows;
    var changes = changesOf(rows, fresh);
    var place = focusPlace();
    var sameRows =
      rows.length === fresh.length &&
      Array.prototype.every.call(rows, function (row, i) {
        return keyOf(row) === keyOf(fresh[i]);
      });
    if (sameRows) {
      // Only the rows that changed: the rest (and a focus in them) stay as they are.
      Array.prototype.slice.call(rows).forEach(function (row, i) {
        if (row.outerHTML !== fresh[i].outerHTML) {
          row.replaceWith(fresh[i]);
        }
      });
    } else {
      body.replaceChildren.apply(body, Array.prototype.slice.call(fresh));
    }
    restoreFocus(place);
    return changes;
  }

  function replaceWorking(html) {
    var now = document.getElementById('working-now');
    var fresh = parse(html).getElementById('working-now');
    if (now && fresh && now.outerHTML !== fresh.outerHTML) {
      now.replaceWith(fresh);
    }
  }

  function announce(changes) {
    if (!changes.length) {
      return;
    }
    var told = changes.slice(0, ANNOUNCED_AT_MOST);
    var more = changes.length - told.length;
    announcer.textContent = told.join('; ') + (more > 0 ? '; and ' + more + ' more' : '') + '.';
  }

  function stop(text) {
    stopped = true;
    window.clearTimeout(timer);
    say(text);
  }

  function schedule(ms) {
    window.clearTimeout(timer);
    if (stopped || document.hidden) {
      return;
    }
    timer = window.setTimeout(ask, ms * (0.9 + Math.random() * 0.2));
  }

  function ask() {
    if (asking || stopped) {
      return;
    }
    asking = true;
    window
      .fetch(url, {
        credentials: 'same-origin',
        redirect: 'manual', // a lapsed login answers with a redirect to the hub: say so instead
        cache: 'no-store',
        // the hub's OAuth takes the login cookie from a script only with this token
        headers: { Accept: 'application/json', 'X-XSRFToken': xsrf }
      })
      .then(function (response) {
        if (response.type === 'opaqueredirect' || response.status === 401) {
          stop('Live updates stopped: you are signed out. Reload the page to sign in again.');
          return null;
        }
        if (response.status === 403 || response.status === 404) {
          return response.json().then(function (answer) {
            stop('Live updates stopped: ' + (answer.error || 'HTTP ' + response.status) + '.');
            return null;
          });
        }
        if (!response.ok) {
          throw new Error('HTTP ' + response.status);
        }
        return response.json();
      })
      .then(function (answer) {
        if (answer === null) {
          return;
        }
        announce(replaceRows(answer.rows));
        replaceWorking(answer.working);
        delay = EVERY_MS;
        say('Live: updated ' + clock(new Date()));
      })
      .catch(function () {
        delay = Math.min(delay * 2, LONGEST_MS);
        say(
          'Live updates failed at ' + clock(new Date()) + '; trying again in ' +
            Math.round(delay / 1000) + ' s. The table may be out of date.'
        );
      })
      .then(function () {
        asking = false;
        schedule(delay);
      });
  }

  document.addEventListener('visibilitychange', function () {
    if (stopped) {
      return;
    }
    if (document.hidden) {
      window.clearTimeout(timer);
      say('Live updates paused while this tab is hidden.');
    } else {
      ask();
    }
  });

  say('Live: updated ' + clock(new Date()));
  schedule(delay);
})();
