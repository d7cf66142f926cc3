// updraft web UI: live refresh over Server-Sent Events, actions through the REST API v2,
// the trigger form and the log tail. No dependencies, no build step.
(function () {
  'use strict';

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const enc = encodeURIComponent;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- the API ---------------------------------------------------------------------------

  /** The problem's words: `detail` (a string, or FastAPI-style list of {loc, msg}), else `title`. */
  function problemText(data, fallback) {
    if (data && typeof data === 'object') {
      const d = data.detail;
      if (Array.isArray(d)) {
        return d.map((x) => (x && x.loc ? x.loc.join('.') + ': ' : '') + (x && x.msg ? x.msg : JSON.stringify(x))).join('\n');
      }
      if (typeof d === 'string' && d) return d;
      if (d && typeof d === 'object') return JSON.stringify(d);
      if (data.title) return data.title;
    }
    if (typeof data === 'string' && data) return data;
    return fallback;
  }

  /** The session's CSRF token, which every state-changing request sends back. */
  function csrfToken() {
    const meta = $('meta[name="csrf-token"]');
    return meta ? meta.content : '';
  }

  async function api(method, url, body) {
    const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
    const csrf = csrfToken();
    if (csrf && method !== 'GET' && method !== 'HEAD') init.headers['X-CSRF-Token'] = csrf;
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(url, init);
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = text; }
    }
    if (!resp.ok) {
      const err = new Error(problemText(data, `${resp.status} ${resp.statusText}`));
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  function flash(message, kind) {
    const box = $('#flash');
    if (!box) return;
    const msg = document.createElement('div');
    msg.className = 'msg' + (kind === 'error' ? ' error' : '');
    msg.textContent = message;
    box.appendChild(msg);
    setTimeout(() => msg.remove(), kind === 'error' ? 9000 : 4000);
  }

  // ---- live refresh ----------------------------------------------------------------------
  // A live page has one #live element whose content the server renders again on
  // `<data-live-src>?partial=1`. Changes reported over SSE trigger at most one refresh in
  // flight, plus one more if changes arrived meanwhile.

  let refreshing = false;
  let pending = false;

  async function refreshLive() {
    const box = document.getElementById('live');
    if (!box || !box.dataset.liveSrc) return;
    if (refreshing) { pending = true; return; }
    refreshing = true;
    try {
      do {
        pending = false;
        const src = box.dataset.liveSrc;
        const url = src + (src.includes('?') ? '&' : '?') + 'partial=1';
        try {
          const resp = await fetch(url, { headers: { Accept: 'text/html' }, cache: 'no-store' });
          // The session ended: the page itself now leads to the login page.
          if (resp.redirected && new URL(resp.url).pathname === '/login') { window.location.reload(); return; }
          if (resp.ok) {
            box.innerHTML = await resp.text();
            box.dataset.refreshes = String(Number(box.dataset.refreshes || '0') + 1);
            document.dispatchEvent(new CustomEvent('updraft:refreshed'));
          }
        } catch (_) { /* the next change retries */ }
        if (pending) await sleep(250);
      } while (pending);
    } finally {
      refreshing = false;
    }
  }

  function setLive(connected) {
    const status = $('#live-status');
    if (!status) return;
    status.dataset.connected = connected ? 'true' : 'false';
    status.textContent = connected ? 'live' : 'reconnecting…';
    status.title = connected ? 'Live updates: connected' : 'Live updates: reconnecting';
  }

  function followEvents() {
    const url = document.body.dataset.events;
    if (!url || !window.EventSource) return;
    const source = new EventSource(url);
    // `ready` on every (re)connection: refresh once for changes made while not listening.
    source.addEventListener('ready', () => { setLive(true); refreshLive(); });
    source.addEventListener('change', () => refreshLive());
    source.addEventListener('error', () => {
      setLive(false);
      // Refused (too many open pages: 429/503) or gone: the browser gives up; try again later.
      if (source.readyState === EventSource.CLOSED) setTimeout(followEvents, 30000);
    });
    window.addEventListener('pagehide', () => source.close(), { once: true });
  }

  // ---- actions ---------------------------------------------------------------------------

  function dagApi() {
    const head = $('[data-dag-api]');
    return head ? head.dataset.dagApi : null;
  }

  async function setPaused(input) {
    const dagId = input.dataset.dagId;
    const paused = !input.checked;
    input.disabled = true;
    try {
      await api('PATCH', `/api/v2/dags/${enc(dagId)}`, { is_paused: paused });
      const text = input.closest('.switch') && $('.switch-text', input.closest('.switch'));
      if (text) text.textContent = paused ? 'paused' : 'active';
      flash(`${dagId} ${paused ? 'paused' : 'is active'}`);
      refreshLive(); // a refresh already under way may have read the old state
    } catch (e) {
      input.checked = !input.checked;
      flash(`Could not ${paused ? 'pause' : 'unpause'} ${dagId}: ${e.message}`, 'error');
    } finally {
      input.disabled = false;
    }
  }

  async function act(button) {
    const base = dagApi();
    const action = button.dataset.action;
    const runId = button.dataset.runId || ($('[data-run-scope]') || {}).dataset?.runId;
    const taskId = button.dataset.taskId;
    if (!base || !runId) return;
    const runApi = `${base}/dagRuns/${enc(runId)}`;
    const downstreamBox = $('#include-downstream');
    const downstream = downstreamBox ? downstreamBox.checked : false;
    try {
      if (action === 'clear' || action === 'clear-run') {
        const taskIds = action === 'clear' ? [taskId] : $$('[data-ti-row]').map((row) => row.dataset.taskId);
        const what = action === 'clear' ? `task ${taskId}${downstream ? ' and its downstream tasks' : ''}` : 'every task';
        if (!confirm(`Clear ${what} in run ${runId}? They will run again.`)) return;
        button.disabled = true;
        const body = {
          dag_run_id: runId,
          task_ids: taskIds,
          include_downstream: action === 'clear' && downstream,
          include_upstream: false,
          only_failed: false,
          reset_dag_runs: true,
          dry_run: false,
        };
        const result = await api('POST', `${base}/clearTaskInstances`, body);
        const n = result && Array.isArray(result.task_instances) ? result.task_instances.length : taskIds.length;
        flash(`Cleared ${n} task instance${n === 1 ? '' : 's'}`);
      } else if (action === 'mark') {
        const state = button.dataset.state;
        if (!confirm(`Mark ${taskId} in run ${runId} as ${state}?`)) return;
        button.disabled = true;
        await api('PATCH', `${runApi}/taskInstances/${enc(taskId)}`, { new_state: state });
        flash(`${taskId} marked ${state}`);
      } else if (action === 'delete-run') {
        if (!confirm(`Delete run ${runId} with its task instances and their history?`)) return;
        button.disabled = true;
        await api('DELETE', runApi);
        flash(`Run ${runId} deleted`);
        if (button.dataset.next) { location.href = button.dataset.next; return; }
      } else {
        return;
      }
      refreshLive();
    } catch (e) {
      flash(e.message, 'error');
    } finally {
      button.disabled = false;
    }
  }

  // ---- the trigger form ------------------------------------------------------------------

  /** The run's conf from the param fields; throws on text that must be JSON and is not. */
  function readConf(form) {
    const raw = $('[data-conf-json] textarea', form);
    if (raw) {
      const text = raw.value.trim() || '{}';
      try { return JSON.parse(text); } catch (e) { throw new Error(`The configuration is not valid JSON: ${e.message}`); }
    }
    const conf = {};
    for (const field of $$('[data-param]', form)) {
      const name = field.dataset.param;
      const input = $('input, select, textarea', field);
      const text = input.value;
      switch (field.dataset.kind) {
        case 'boolean':
          conf[name] = input.checked;
          break;
        case 'enum':
          conf[name] = JSON.parse(text);
          break;
        case 'integer':
        case 'number': {
          const t = text.trim();
          if (t === '') break; // the param's default applies (or the API says it is required)
          const n = Number(t);
          conf[name] = Number.isFinite(n) ? n : t; // let the API explain what is wrong
          break;
        }
        case 'json':
          if (text.trim() === '') break;
          try { conf[name] = JSON.parse(text); } catch (e) { throw new Error(`${name}: not valid JSON (${e.message})`); }
          break;
        case 'any':
          if (text === '') break;
          try { conf[name] = JSON.parse(text); } catch (_) { conf[name] = text; }
          break;
        default:
          conf[name] = text;
      }
    }
    return conf;
  }

  async function trigger(form) {
    const error = $('#trigger-error');
    const submit = $('button[type=submit]', form);
    error.hidden = true;
    error.textContent = '';
    try {
      const body = { logical_date: null, conf: readConf(form) };
      const runId = form.elements.run_id ? form.elements.run_id.value.trim() : '';
      if (runId) body.dag_run_id = runId;
      submit.disabled = true;
      const run = await api('POST', form.dataset.api, body);
      const id = (run && (run.dag_run_id || run.run_id)) || runId;
      flash(`Triggered ${id}`);
      location.href = `${form.dataset.dagUrl}/graph` + (id ? `?run_id=${enc(id)}` : '');
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
      error.focus && error.setAttribute('tabindex', '-1');
    } finally {
      submit.disabled = false;
    }
  }

  // ---- the log ---------------------------------------------------------------------------
  // Reads the try's log through the API, then asks every second for what was added since
  // (`continuation_token`) until the API says the log is complete (`end_of_log`: the try is
  // over and everything was read).

  function logText(content) {
    if (content == null) return '';
    if (typeof content === 'string') return content;
    if (Array.isArray(content)) {
      return content.map((line) => {
        if (typeof line === 'string') return line.endsWith('\n') ? line : line + '\n';
        if (line && typeof line === 'object' && 'event' in line) {
          const prefix = [line.timestamp, line.level].filter((x) => x != null && x !== '').join(' ');
          return (prefix ? prefix + ' ' : '') + String(line.event) + '\n';
        }
        if (line && typeof line === 'object') return JSON.stringify(line) + '\n';
        return String(line) + '\n';
      }).join('');
    }
    return JSON.stringify(content);
  }

  /** Whether the task instance shown is queued or running (from the live part). */
  function tryIsLive() {
    const facts = $('#live [data-ti-state]');
    return !!facts && (facts.dataset.tiState === 'queued' || facts.dataset.tiState === 'running');
  }

  async function tailLog() {
    const pre = $('#log');
    if (!pre) return;
    const status = $('#log-status');
    const url = pre.dataset.logApi;
    const follow = pre.dataset.follow === 'true';
    let token = null;
    for (;;) {
      const wasLive = follow && tryIsLive();
      let done = !wasLive;
      try {
        const data = await api('GET', token ? `${url}?token=${enc(token)}` : url);
        const isObject = data && typeof data === 'object' && !Array.isArray(data);
        const text = logText(isObject && 'content' in data ? data.content : data);
        const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
        if (isObject && data.continuation_token) {
          pre.textContent += text;
          token = data.continuation_token;
        } else {
          pre.textContent = text; // no token: the whole log each time
        }
        if (atBottom) pre.scrollTop = pre.scrollHeight;
        if (isObject && typeof data.end_of_log === 'boolean') done = data.end_of_log;
        pre.dataset.loaded = 'true';
        pre.dataset.complete = done ? 'true' : 'false';
        if (status) {
          status.textContent = !done ? 'Following the log while the task runs…'
            : (pre.textContent ? 'End of the log.' : 'The log is empty.');
        }
      } catch (e) {
        if (status) status.textContent = `The log could not be read: ${e.message}`;
        if (!follow || !tryIsLive()) return;
        done = false; // the try is still going: try again
      }
      if (done) return;
      await sleep(1000);
    }
  }


  // ---- connections and variables -------------------------------------------------------
  // The form's fields become the API body; an empty password is left out (the stored one is
  // kept), empty optional fields are null.

  function secretBody(form) {
    const body = {};
    for (const el of Array.from(form.elements)) {
      if (!el.name || el.tagName === 'BUTTON') continue;
      const text = el.value;
      if (el.name === 'password') {
        if (text !== '') body.password = text;
      } else if (el.name === 'port') {
        body.port = text.trim() === '' ? null : Number(text);
      } else if (el.name === 'value') {
        body.value = text;
      } else if (el.name === 'connection_id' || el.name === 'conn_type' || el.name === 'key' || el.name === 'team_name') {
        body[el.name] = text.trim();
      } else {
        body[el.name] = text.trim() === '' ? null : text;
      }
    }
    return body;
  }

  function showError(form, message) {
    const error = $('#form-error', form);
    if (!error) { flash(message, 'error'); return; }
    error.textContent = message;
    error.hidden = message === '';
  }

  async function saveSecret(form) {
    const submit = $('button[type=submit]', form);
    showError(form, '');
    try {
      submit.disabled = true;
      await api(form.dataset.method, form.dataset.api, secretBody(form));
      flash('Saved');
      location.href = form.dataset.next;
    } catch (e) {
      showError(form, e.message);
    } finally {
      submit.disabled = false;
    }
  }

  async function testConnection(button) {
    const form = button.closest('form');
    const out = $('#test-result', form);
    showError(form, '');
    try {
      button.disabled = true;
      const body = secretBody(form);
      if (body.password === undefined) delete body.password;
      const result = await api('POST', '/api/v2/connections/test', body);
      out.textContent = (result.status ? 'Test passed: ' : 'Test failed: ') + result.message;
      out.hidden = false;
    } catch (e) {
      showError(form, e.message);
    } finally {
      button.disabled = false;
    }
  }

  async function deleteSecret(button) {
    if (!confirm(`Delete ${button.dataset.what}?`)) return;
    try {
      button.disabled = true;
      await api('DELETE', button.dataset.delete);
      const row = button.closest('tr');
      if (row) row.remove();
      flash(`Deleted ${button.dataset.what}`);
    } catch (e) {
      flash(e.message, 'error');
      button.disabled = false;
    }
  }

  /** Asks for a sync of a DAG source now; a scheduler takes the request. */
  async function syncSource(button) {
    try {
      button.disabled = true;
      await api('POST', button.dataset.syncSource);
      flash(`Sync of ${button.dataset.what} asked for`);
      setTimeout(() => location.reload(), 2000);
    } catch (e) {
      flash(e.message, 'error');
      button.disabled = false;
    }
  }

  // ---- wiring ----------------------------------------------------------------------------

  document.addEventListener('change', (ev) => {
    const t = ev.target;
    if (t.matches('.pause-toggle')) setPaused(t);
    else if (t.matches('select[data-nav]')) {
      location.href = t.dataset.nav ? t.dataset.nav + enc(t.value) : t.value;
    }
  });

  document.addEventListener('click', (ev) => {
    const button = ev.target.closest('button[data-action]');
    if (button) { ev.preventDefault(); act(button); return; }
    const remove = ev.target.closest('button[data-delete]');
    if (remove) { ev.preventDefault(); deleteSecret(remove); return; }
    const test = ev.target.closest('button[data-test-connection]');
    if (test) { ev.preventDefault(); testConnection(test); return; }
    const sync = ev.target.closest('button[data-sync-source]');
    if (sync) { ev.preventDefault(); syncSource(sync); }
  });

  document.addEventListener('submit', (ev) => {
    if (ev.target.matches('#trigger-form')) { ev.preventDefault(); trigger(ev.target); }
    else if (ev.target.matches('#secret-form')) { ev.preventDefault(); saveSecret(ev.target); }
  });

  document.addEventListener('DOMContentLoaded', () => {
    followEvents();
    tailLog();
  });
})();
