// The Staywire admin page: every figure and action goes through the server API
// (docs/api.md) with the key typed in, held in this tab's session storage only.
// Polls `info` once a second; charts keep the last two minutes.

const POLL_MS = 1000;
const POINTS = 120;
const KEY = 'staywire-admin-key';
const COLORS = ['#2f6fde', '#d9480f', '#2b8a3e', '#ae3ec9', '#e8590c', '#1098ad', '#5c940d'];

/** What the page knows; `window.staywireAdmin` for the curious (and the tests). */
const state = {
  key: sessionStorage.getItem(KEY) || '',
  series: { publications: [], deliveries: [], connects: [], closes: {} },
  lastCloses: null, // summed closes by code at the previous poll
  lastAt: 0,
  polls: 0,
  errors: 0,
  nodes: [],
  timer: null,
};
window.staywireAdmin = state;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, reason) {
    super(`${code}: ${reason}`);
    this.status = status;
    this.code = code;
  }
}

async function api(method, params = {}) {
  const res = await fetch(`/api/${method}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${state.key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(params),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = body.error || { code: 'internal', reason: `HTTP ${res.status}` };
    throw new ApiError(res.status, err.code, err.reason);
  }
  return body;
}

function setStatus(text, kind) {
  const el = $('status');
  el.textContent = text;
  el.className = `status ${kind || ''}`;
}

function cell(row, value, numeric = false) {
  const td = row.insertCell();
  td.textContent = value;
  if (numeric) td.className = 'num';
}

function fmt(n) {
  return n >= 100 ? Math.round(n).toLocaleString('en') : (Math.round(n * 10) / 10).toString();
}

function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h`;
}

function push(list, value) {
  list.push(value);
  if (list.length > POINTS) list.shift();
}

// ---------------------------------------------------------------- charts

function draw(canvas, lines) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const max = Math.max(1, ...lines.flatMap((l) => l.values));
  ctx.strokeStyle = '#e3e6ea';
  ctx.beginPath();
  ctx.moveTo(0, height - 0.5);
  ctx.lineTo(width, height - 0.5);
  ctx.stroke();
  ctx.fillStyle = '#667';
  ctx.font = '11px system-ui';
  ctx.fillText(fmt(max), 2, 11);
  for (const { values, color } of lines) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = (width * (i + POINTS - values.length)) / (POINTS - 1);
      const y = height - 2 - ((height - 14) * v) / max;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

function render() {
  const s = state.series;
  for (const name of ['publications', 'deliveries', 'connects']) {
    draw($(`c-${name}`), [{ values: s[name], color: COLORS[0] }]);
    $(`v-${name}`).textContent = s[name].length ? fmt(s[name][s[name].length - 1]) : '';
  }
  const codes = Object.keys(s.closes).sort();
  draw($('c-closes'), codes.map((code, i) => ({ values: s.closes[code], color: COLORS[i % COLORS.length] })));
  const legend = $('closes-legend');
  legend.replaceChildren(...codes.map((code, i) => {
    const span = document.createElement('span');
    span.style.color = COLORS[i % COLORS.length];
    const last = s.closes[code][s.closes[code].length - 1] || 0;
    span.textContent = `${code}: ${fmt(last)}/s`;
    return span;
  }));
  const total = codes.reduce((n, code) => n + (s.closes[code][s.closes[code].length - 1] || 0), 0);
  $('v-closes').textContent = codes.length ? fmt(total) : '';
}

// ---------------------------------------------------------------- polling

function showNodes(reply) {
  const body = $('nodes').tBodies[0];
  body.replaceChildren();
  for (const n of reply.nodes) {
    const row = body.insertRow();
    cell(row, n.node);
    cell(row, n.version);
    cell(row, duration(n.uptime), true);
    cell(row, n.connections.toLocaleString('en'), true);
    cell(row, n.subscriptions.toLocaleString('en'), true);
    cell(row, n.channels.toLocaleString('en'), true);
    cell(row, fmt(n.publications_per_second), true);
    cell(row, fmt(n.deliveries_per_second), true);
    cell(row, fmt(n.connects_per_second), true);
  }
  const missing = $('missing');
  missing.hidden = reply.missing.length === 0;
  missing.textContent = `Not answering: ${reply.missing.join(', ')}`;
}

function showRecent(reply) {
  const all = reply.nodes.flatMap((n) => n.recent_closes.map((c) => ({ ...c, node: n.node })));
  all.sort((a, b) => b.at - a.at);
  const body = $('recent').tBodies[0];
  body.replaceChildren();
  for (const c of all.slice(0, 20)) {
    const row = body.insertRow();
    cell(row, new Date(c.at * 1000).toLocaleTimeString());
    cell(row, c.node);
    cell(row, String(c.code), true);
    cell(row, c.user || '(anonymous)');
    cell(row, c.client);
    cell(row, c.reason);
  }
}

function record(reply, now) {
  const s = state.series;
  const sum = (key) => reply.nodes.reduce((n, node) => n + node[key], 0);
  push(s.publications, sum('publications_per_second'));
  push(s.deliveries, sum('deliveries_per_second'));
  push(s.connects, sum('connects_per_second'));
  // Closes: totals by code summed over the nodes; the rate is the change since the last poll.
  const closes = {};
  for (const node of reply.nodes) {
    for (const [code, n] of Object.entries(node.closes)) closes[code] = (closes[code] || 0) + n;
  }
  if (state.lastCloses !== null) {
    const seconds = Math.max(0.001, (now - state.lastAt) / 1000);
    for (const code of new Set([...Object.keys(closes), ...Object.keys(state.lastCloses)])) {
      const rate = Math.max(0, ((closes[code] || 0) - (state.lastCloses[code] || 0)) / seconds);
      if (!s.closes[code]) s.closes[code] = [];
      push(s.closes[code], rate);
    }
  }
  state.lastCloses = closes;
  state.lastAt = now;
}

async function poll() {
  try {
    const reply = await api('info');
    state.polls += 1;
    state.nodes = reply.nodes;
    record(reply, Date.now());
    showNodes(reply);
    showRecent(reply);
    render();
    setStatus(`${reply.nodes.length} node(s), updated ${new Date().toLocaleTimeString()}`, 'ok');
  } catch (err) {
    state.errors += 1;
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      signOut(err.status === 401 ? 'wrong API key' : 'the server API is off (no api_key)');
      return;
    }
    setStatus(`cannot reach the API: ${err.message}`, 'bad');
  }
  state.timer = setTimeout(poll, POLL_MS);
}

// ---------------------------------------------------------------- sign in and out

function signIn(key) {
  state.key = key;
  sessionStorage.setItem(KEY, key);
  $('signin').hidden = true;
  $('main').hidden = false;
  $('signout').hidden = false;
  clearTimeout(state.timer);
  poll();
}

function signOut(why) {
  clearTimeout(state.timer);
  state.key = '';
  sessionStorage.removeItem(KEY);
  $('signin').hidden = false;
  $('main').hidden = true;
  $('signout').hidden = true;
  setStatus(why || 'signed out', why ? 'bad' : '');
}

// ---------------------------------------------------------------- actions

async function searchChannels(event) {
  event.preventDefault();
  const note = $('channels-note');
  const body = $('channels').tBodies[0];
  try {
    const reply = await api('channels', { pattern: $('pattern').value, limit: 100 });
    // Presence per channel, in one batch: a channel without presence answers an error.
    const present = reply.channels.length ? (await api('batch', {
      commands: reply.channels.map((c) => ({ method: 'presence_stats', params: { channel: c.channel } })),
    })).replies : [];
    body.replaceChildren();
    reply.channels.forEach((c, i) => {
      const row = body.insertRow();
      cell(row, c.channel);
      cell(row, c.subscribers.toLocaleString('en'), true);
      const stats = present[i] && present[i].result;
      cell(row, stats ? stats.users.toLocaleString('en') : '-', true);
      cell(row, stats ? stats.clients.toLocaleString('en') : '-', true);
    });
    note.textContent = `${reply.channels.length} channel(s)${reply.truncated ? ', more not shown' : ''}`
      + (reply.missing.length ? `; not answering: ${reply.missing.join(', ')}` : '');
  } catch (err) {
    note.textContent = err.message;
  }
}

async function publish(event) {
  event.preventDefault();
  const out = $('pub-result');
  let data;
  try {
    data = JSON.parse($('pub-data').value);
  } catch (err) {
    out.textContent = `not JSON: ${err.message}`;
    return;
  }
  try {
    const reply = await api('publish', { channel: $('pub-channel').value, data });
    out.textContent = `published at offset ${reply.offset} (epoch ${reply.epoch})`;
  } catch (err) {
    out.textContent = err.message;
  }
}

async function disconnect(event) {
  event.preventDefault();
  const out = $('dis-result');
  const params = { user: $('dis-user').value, reconnect: $('dis-reconnect').checked };
  if ($('dis-reason').value) params.reason = $('dis-reason').value;
  try {
    const reply = await api('disconnect', params);
    out.textContent = `closed ${reply.disconnected} connection(s) with ${reply.code}`
      + (reply.missing.length ? `; not answering: ${reply.missing.join(', ')}` : '');
  } catch (err) {
    out.textContent = err.message;
  }
}

$('signin-form').addEventListener('submit', (event) => {
  event.preventDefault();
  signIn($('key').value);
});
$('signout').addEventListener('click', () => signOut());
$('channels-form').addEventListener('submit', searchChannels);
$('publish-form').addEventListener('submit', publish);
$('disconnect-form').addEventListener('submit', disconnect);
if (state.key) signIn(state.key);
