'use strict';
// The crm-relay inspector. Everything shown comes from the admin API of the listener that
// served this page; webhook content only ever enters the page as text (textContent).

const role = document.body.dataset.role;
const $ = (id) => document.getElementById(id);
const FINISHED = ['delivered', 'dead', 'acknowledged'];
const PAGE = 100;

let token = sessionStorage.getItem('crm-relay-token') || '';
const events = new Map(); // id -> event as /events lists it
let order = []; // ids shown, newest first
let next = null; // where the next page starts
let selected = null;
let lastEventId = null;
let retryMs = 2000;
let connected = false;
// Outcomes that came before their arrival (a fast delivery), applied when it comes.
const early = new Map();
// Live events seen while a fresh listing is being fetched: the listing may predate them,
// so they are replayed over it when it comes.
const pending = new Set();

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k ?? ''));
  return e;
}

function say(text, error) {
  const m = $('message');
  m.textContent = text || '';
  m.className = error ? 'error' : '';
}

async function api(path, opts = {}) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  let body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  const r = await fetch(path, { method: opts.method || 'GET', headers, body, cache: 'no-store' });
  if (r.status === 401) {
    $('token-form').hidden = false;
    throw new Error('this listener needs its admin token');
  }
  const data = await r.json().catch(() => ({}));
  if (!r.ok && !opts.accept?.includes(r.status)) throw new Error(data.error || 'HTTP ' + r.status);
  return data;
}

function time(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : '';
}

function size(n) {
  return n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KiB' : (n / 1048576).toFixed(1) + ' MiB';
}

function filters() {
  return { source: $('f-source').value.trim(), status: $('f-status').value };
}

function matches(ev) {
  const f = filters();
  return (!f.source || ev.source === f.source) && (!f.status || ev.status === f.status);
}

function row(ev) {
  const o = ev.outcome || {};
  const idCell = el('td', { class: 'id' }, ev.id);
  if (ev.replay_of) idCell.append(el('span', { class: 'tag' }, 'replay'));
  if (ev.redelivery_of) idCell.append(el('span', { class: 'tag' }, 'redelivery'));
  const tr = el('tr', { 'data-id': ev.id, 'data-status': ev.status, onclick: () => show(ev.id) },
    el('td', {}, time(ev.received_at)),
    idCell,
    el('td', {}, ev.source || '-'),
    el('td', { class: 'num' }, size(ev.size || 0)),
    el('td', {}, el('span', { class: 'badge ' + ev.status }, ev.status)),
    el('td', { class: 'num' }, o.attempt || ''),
    el('td', { class: 'num' }, o.took_ms !== undefined && ev.status === 'delivered' ? o.took_ms + ' ms' : ''));
  if (ev.id === selected) tr.classList.add('selected');
  return tr;
}

function render() {
  const body = $('events').tBodies[0];
  body.replaceChildren(...order.map((id) => row(events.get(id))));
  $('more').hidden = !next;
}

function rerender(id) {
  const old = document.querySelector(`#events tr[data-id="${CSS.escape(id)}"]`);
  if (old) old.replaceWith(row(events.get(id)));
}

async function load(more) {
  const f = filters();
  const q = new URLSearchParams({ limit: PAGE });
  if (f.source) q.set('source', f.source);
  if (f.status) q.set('status', f.status);
  if (more && next) q.set('before', next);
  const meanwhile = [];
  if (!more) pending.add(meanwhile);
  try {
    const data = await api('/events?' + q);
    pending.delete(meanwhile);
    if (!more) { events.clear(); order = []; }
    for (const ev of data.events) {
      if (!events.has(ev.id)) order.push(ev.id);
      events.set(ev.id, ev);
    }
    for (const [kind, d] of meanwhile) {
      if (kind === 'received') onReceived(d);
      else onOutcome(d);
    }
    order.sort((a, b) => compareIds(b, a));
    next = data.next;
    render();
    say(data.complete ? '' : 'Looked at the next 20,000 webhooks; "Older webhooks" looks further.');
  } catch (e) {
    pending.delete(meanwhile);
    say(e.message, true);
  }
}

// Ids are `<ms>-<seq>`, or `<partition>/<ms>-<seq>` with several partitions: by time, then
// sequence, then partition.
function compareIds(a, b) {
  const parse = (id) => {
    const slash = id.indexOf('/');
    const [ms, seq] = id.slice(slash + 1).split('-').map(BigInt);
    return [ms, seq, BigInt(slash < 0 ? 0 : id.slice(0, slash))];
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) {
    if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

function onReceived(ev) {
  for (const meanwhile of pending) meanwhile.push(['received', ev]);
  const o = early.get(ev.id);
  if (o) {
    early.delete(ev.id);
    ev.outcome = o;
    ev.status = o.state;
  }
  if (events.has(ev.id) || !matches(ev)) return;
  events.set(ev.id, ev);
  order.unshift(ev.id);
  $('events').tBodies[0].prepend(row(ev));
}

function onOutcome(o) {
  for (const meanwhile of pending) meanwhile.push(['outcome', o]);
  const ev = events.get(o.id);
  if (!ev) {
    early.set(o.id, o);
    if (early.size > 1000) early.delete(early.keys().next().value);
    return;
  }
  ev.outcome = o;
  ev.status = o.state;
  rerender(o.id);
  if (selected === o.id) show(o.id);
}

function dispatch(block) {
  let event = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data += (data ? '\n' : '') + value;
    else if (field === 'id') lastEventId = value;
    else if (field === 'retry') retryMs = Number(value) || retryMs;
  }
  if (!data) return;
  const d = JSON.parse(data);
  if (event === 'received') onReceived(d);
  else if (event === 'outcome') onOutcome(d);
  else if (event === 'reset') load(false);
}

function setLive(on, text) {
  const b = $('live');
  b.className = 'badge ' + (on ? 'on' : 'off');
  b.textContent = text;
}

// Server-Sent Events read through fetch, so that the admin token can be sent; on reconnect
// Last-Event-ID brings the arrivals missed meanwhile, and rows still in flight are re-read.
async function live() {
  const headers = { Accept: 'text/event-stream' };
  if (token) headers.Authorization = 'Bearer ' + token;
  if (lastEventId) headers['Last-Event-ID'] = lastEventId;
  try {
    const r = await fetch('/live', { headers, cache: 'no-store' });
    if (r.status === 401) { $('token-form').hidden = false; return; }
    if (!r.ok) throw new Error('HTTP ' + r.status);
    setLive(true, 'live');
    if (!connected) load(false);
    else refreshUnfinished();
    connected = true;
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        dispatch(block);
      }
    }
  } catch (e) {
    // reconnect below
  }
  setLive(false, 'reconnecting…');
  setTimeout(live, retryMs);
}

async function refreshUnfinished() {
  for (const id of order.slice(0, PAGE)) {
    const ev = events.get(id);
    if (FINISHED.includes(ev.status)) continue;
    try {
      const fresh = await api('/events/' + encodeURIComponent(id));
      if (FINISHED.includes(ev.status)) continue; // the live feed finished it meanwhile
      ev.status = fresh.status;
      ev.outcome = fresh.outcome;
      rerender(id);
    } catch (e) {
      // gone from the stream, or Redis down: left as it was
    }
  }
}

function kv(table, pairs) {
  table.replaceChildren(...pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', { class: 'mono' }, v))));
}

// A header value that is not UTF-8 comes as its bytes: shown escaped.
function fieldText(v) {
  if (!Array.isArray(v)) return v;
  return v.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '\\x' + b.toString(16).padStart(2, '0'))).join('');
}

function bodyText(d) {
  if (d.body_binary) {
    const hex = d.body_hex || '';
    const lines = [];
    for (let i = 0; i < hex.length; i += 32) {
      const bytes = hex.slice(i, i + 32).match(/../g).join(' ');
      lines.push((i / 2).toString(16).padStart(8, '0') + '  ' + bytes);
    }
    if (d.body_hex_truncated) lines.push('… (first 64 KiB shown)');
    return ['binary, hex', lines.join('\n')];
  }
  const text = d.body ?? '';
  try {
    return ['JSON', JSON.stringify(JSON.parse(text), null, 2)];
  } catch (e) {
    return ['text', text];
  }
}

async function act(what, fn) {
  try {
    say(what + '…');
    say(await fn());
  } catch (e) {
    say(what + ' failed: ' + e.message, true);
  }
}

function actions(d) {
  const out = [];
  const dlq = d.outcome && d.outcome.dlq_id;
  if (d.status === 'dead' && dlq) {
    out.push(el('button', { type: 'button', id: 'a-replay', onclick: () => act('Replaying', async () => {
      const r = await api('/dlq/replay', { method: 'POST', json: { ids: [dlq] }, accept: [404] });
      if (!r.replayed || !r.replayed.length) throw new Error('the dead letter is gone (replayed or purged already)');
      return 'Replayed dead letter ' + dlq + ' as ' + r.replayed[0].new_id;
    }) }, 'Replay dead letter'));
    out.push(el('button', { type: 'button', id: 'a-purge', onclick: () => {
      if (!confirm('Delete dead letter ' + dlq + ' for good? The webhook will not be delivered.')) return;
      act('Purging', async () => {
        await api('/dlq/' + encodeURIComponent(dlq), { method: 'DELETE' });
        return 'Purged dead letter ' + dlq;
      });
    } }, 'Purge dead letter'));
  }
  if (FINISHED.includes(d.status)) {
    out.push(el('button', { type: 'button', id: 'a-redeliver', onclick: () => act('Redelivering', async () => {
      const r = await api('/events/redeliver', { method: 'POST', json: { ids: [d.id] } });
      return 'Redelivering ' + d.id + ' as ' + r.redelivered[0].new_id;
    }) }, 'Redeliver'));
  }
  $('d-actions').replaceChildren(...out);
}

async function show(id) {
  selected = id;
  document.querySelectorAll('#events tr.selected').forEach((tr) => tr.classList.remove('selected'));
  document.querySelector(`#events tr[data-id="${CSS.escape(id)}"]`)?.classList.add('selected');
  let d;
  try {
    d = await api('/events/' + encodeURIComponent(id));
  } catch (e) {
    say(id + ': ' + e.message, true);
    return;
  }
  if (selected !== id) return;
  $('detail').hidden = false;
  $('d-title').replaceChildren(d.id + ' ', el('span', { class: 'badge ' + d.status, id: 'd-status' }, d.status));
  actions(d);
  const o = d.outcome || {};
  kv($('d-relay'), [
    ['X-Relay-Id', d.relay_id],
    ['X-Relay-Attempt', o.attempt ? String(o.attempt) + ' (last)' : 'not attempted yet'],
    ['X-Relay-Received-At', d.received_at + ' (' + new Date(d.received_at).toISOString() + ')'],
    ['X-Relay-Source', d.source],
    ['X-Relay-Redelivery-Of', d.redelivery_of],
    ['X-Relay-Replay-Of', d.replay_of],
    ['Request', d.method + ' ' + d.path + (d.remote ? ' from ' + d.remote : '')],
    ['Target', o.attempt ? (o.target || 'default') : ''],
    ['Dead letter', o.dlq_id],
  ]);
  $('d-attempts').tBodies[0].replaceChildren(...(d.attempts || []).map((a) => el('tr', {},
    el('td', {}, a.attempt),
    el('td', {}, el('span', { class: 'badge ' + a.state }, a.state)),
    el('td', {}, a.status ?? ''),
    el('td', {}, time(a.at)),
    el('td', { class: 'num' }, a.took_ms + ' ms'),
    el('td', {}, a.error || ''),
    el('td', {}, a.answer ? el('pre', {}, a.answer) : ''))));
  kv($('d-headers'), (d.headers || []).map((h) => [h[0], fieldText(h[1])]));
  const [kind, text] = bodyText(d);
  $('d-body-kind').textContent = '(' + kind + ', ' + size(d.size || 0) + ')';
  $('d-body').textContent = text;
}

$('role').textContent = role + ' admin';
$('what').textContent = role === 'server'
  ? 'What arrived and was stored, and what the client made of it.'
  : 'What this client delivered, retried or dead-lettered.';
$('f-source').addEventListener('change', () => load(false));
$('f-status').addEventListener('change', () => load(false));
$('refresh').addEventListener('click', () => load(false));
$('more').addEventListener('click', () => load(true));
$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem('crm-relay-token', token);
  location.reload();
});
live();
