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
  var found = /** @type {HTMLTableElement | null} */ (document.getElementById('overview'));
  if (!script || !found || !found.tBodies.length || !window.fetch) {
    return;
  }
  /** @type {HTMLTableElement} */
  var table = found;
  var url = script.getAttribute('data-live') + window.location.search;
  var xsrf = script.getAttribute('data-xsrf') || '';
  var body = table.tBodies[0];
  var delay = EVERY_MS;
  /** @type {number | undefined} */
  var timer;
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
  table.before(status, announcer);

  /** @param {number} n */
  function two(n) {
    return (n < 10 ? '0' : '') + n;
  }

  /** @param {Date} date */
  function clock(date) {
    return two(date.getHours()) + ':' + two(date.getMinutes()) + ':' + two(date.getSeconds());
  }

  /** @param {string} text */
  function say(text) {
    status.textContent = text;
  }

  /** @param {string} html */
  function parse(html) {
    var template = document.createElement('template');
    template.innerHTML = html;
    return template.content;
  }

  /** @param {HTMLTableRowElement} row */
  function keyOf(row) {
    var head = row.cells.length ? row.cells[0] : null;
    return head ? (head.textContent || '').trim() : '';
  }

  /** @param {HTMLTableCellElement} cell */
  function stateOf(cell) {
    var match = /(?:^|\s)state-(\S+)/.exec(cell.className);
    return match ? match[1].replace(/-/g, ' ') : '';
  }

  function headings() {
    var cells = table.tHead ? table.tHead.rows[0].cells : [];
    return Array.from(cells, function (cell) {
      return (cell.textContent || '').trim();
    });
  }

  // Where the focus is inside the body, as (row key, cell index), to put it back after a swap.
  function focusPlace() {
    var active = document.activeElement;
    if (!active || !body.contains(active)) {
      return null;
    }
    var cell = /** @type {HTMLTableCellElement | null} */ (active.closest('td, th'));
    var row = /** @type {HTMLTableRowElement | null} */ (active.closest('tr'));
    return row && cell ? { key: keyOf(row), index: cell.cellIndex } : null;
  }

  /** @param {{ key: string, index: number } | null} place */
  function restoreFocus(place) {
    if (!place || body.contains(document.activeElement)) {
      return;
    }
    var at = place;
    Array.from(body.rows).some(function (row) {
      if (keyOf(row) !== at.key || !row.cells[at.index]) {
        return false;
      }
      var cell = row.cells[at.index];
      var target = /** @type {HTMLElement} */ (cell.querySelector('a, button, [tabindex]') || cell);
      if (target === cell) {
        cell.setAttribute('tabindex', '-1');
      }
      target.focus({ preventScroll: true });
      return true;
    });
  }

  /**
   * @param {ArrayLike<HTMLTableRowElement>} oldRows
   * @param {ArrayLike<HTMLTableRowElement>} newRows
   * @returns {string[]}
   */
  function changesOf(oldRows, newRows) {
    var labels = headings();
    /** @type {Map<string, HTMLTableRowElement>} */
    var before = new Map();
    Array.from(oldRows).forEach(function (row) {
      before.set(keyOf(row), row);
    });
    /** @type {string[]} */
    var changes = [];
    Array.from(newRows).forEach(function (row) {
      var old = before.get(keyOf(row));
      if (!old) {
        return;
      }
      var oldRow = old;
      Array.from(row.cells).forEach(function (cell, i) {
        var was = oldRow.cells[i] ? stateOf(oldRow.cells[i]) : '';
        var now = stateOf(cell);
        if (now && was !== now) {
          changes.push(keyOf(row) + ', ' + (labels[i] || 'column ' + (i + 1)) + ': ' + now);
        }
      });
    });
    return changes;
  }

  /** @param {string} html */
  function replaceRows(html) {
    var fresh = parse(html).querySelectorAll('tr');
    var rows = body.rows;
    var changes = changesOf(rows, fresh);
    var place = focusPlace();
    var sameRows =
      rows.length === fresh.length &&
      Array.from(rows).every(function (row, i) {
        return keyOf(row) === keyOf(fresh[i]);
      });
    if (sameRows) {
      // Only the rows that changed: the rest (and a focus in them) stay as they are.
      Array.from(rows).forEach(function (row, i) {
        if (row.outerHTML !== fresh[i].outerHTML) {
          row.replaceWith(fresh[i]);
        }
      });
    } else {
      body.replaceChildren.apply(body, Array.from(fresh));
    }
    restoreFocus(place);
    return changes;
  }

  /** @param {string} html */
  function replaceWorking(html) {
    var now = document.getElementById('working-now');
    var fresh = parse(html).getElementById('working-now');
    if (now && fresh && now.outerHTML !== fresh.outerHTML) {
      now.replaceWith(fresh);
    }
  }

  /** @param {string[]} changes */
  function announce(changes) {
    if (!changes.length) {
      return;
    }
    var told = changes.slice(0, ANNOUNCED_AT_MOST);
    var more = changes.length - told.length;
    announcer.textContent = told.join('; ') + (more > 0 ? '; and ' + more + ' more' : '') + '.';
  }

  /** @param {string} text */
  function stop(text) {
    stopped = true;
    window.clearTimeout(timer);
    say(text);
  }

  /** @param {number} ms */
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
          'Live updates failed at ' +
            clock(new Date()) +
            '; trying again in ' +
            Math.round(delay / 1000) +
            ' s. The table may be out of date.'
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
