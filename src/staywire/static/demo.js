// The demo page: a chat room and a connection panel. Query parameters:
//   ?channel=room:lobby  the room       ?url=ws://host:port/ws  the endpoint (default: this host)
//   ?share=0             one connection per tab instead of one for all tabs
//   ?ping=5000           heartbeat interval (ms; short here so the round trip shows quickly)
//   ?resume=0            do not resume the room after a reload (positions are kept per tab)

import { Client } from './staywire.js';

const params = new URLSearchParams(location.search);
const channel = params.get('channel') || 'room:lobby';
const url = params.get('url') || '/ws';
const resume = params.get('resume') !== '0';
const posKey = `staywire-demo:pos:${url}:${channel}`;

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const el = {
  channel: $('channel'), messages: $('messages'), compose: /** @type {HTMLFormElement} */ ($('compose')),
  name: /** @type {HTMLInputElement} */ ($('name')), text: /** @type {HTMLInputElement} */ ($('text')),
  pending: $('pending'), state: $('state'), rtt: $('rtt'), countdown: $('countdown'),
  attempts: $('attempts'), queued: $('queued'), leader: $('leader'), isLeader: $('is-leader'),
  tabId: $('tab-id'), sharing: $('sharing'), connId: $('conn-id'), adopted: $('adopted'),
  cut: $('cut'), log: $('log'), members: $('members'), memberCount: $('member-count'),
};

const client = new Client(url, {
  share: params.get('share') !== '0',
  pingInterval: Number(params.get('ping')) || 5000,
});

/** Everything the page showed, for tests and curious readers: window.demo. */
const demo = {
  client, channel, sub: null,
  received: /** @type {any[]} */ ([]),
  events: /** @type {any[]} */ ([]),
  reconnects: /** @type {{attempt: number, delay: number, at: number}[]} */ ([]),
  leaders: /** @type {{leader: string, isLeader: boolean, at: number}[]} */ ([]),
  states: /** @type {{state: string, at: number}[]} */ ([]),
  recoveries: /** @type {any[]} */ ([]),
  /** Who is in the room (presence), as last shown. */
  members: /** @type {{client: string, user: string}[]} */ ([]),
  presence: /** @type {{clients: number, users: number}|null} */ (null),
};
// @ts-ignore
window.demo = demo;

el.channel.textContent = channel;
el.name.value = sessionStorage.getItem('staywire-demo:name') || `guest-${client.tabId.slice(0, 4)}`;
el.name.addEventListener('change', () => sessionStorage.setItem('staywire-demo:name', el.name.value));

/** @param {string} text */
function log(text) {
  const li = document.createElement('li');
  const time = new Date().toLocaleTimeString([], { hour12: false });
  li.textContent = `${time} ${text}`;
  el.log.prepend(li);
  while (el.log.children.length > 100) el.log.lastChild?.remove();
  demo.events.push({ at: Date.now(), text });
}

function render() {
  const s = client.status;
  el.state.textContent = s.state;
  el.state.dataset.state = s.state;
  el.rtt.textContent = s.rtt === null ? '–' : `${Math.round(s.rtt)} ms`;
  el.attempts.textContent = String(s.attempts);
  el.queued.textContent = String(s.queued);
  el.leader.textContent = s.leader ?? '–';
  el.isLeader.textContent = s.isLeader ? 'this tab' : 'another tab';
  el.isLeader.classList.toggle('yes', s.isLeader);
  el.tabId.textContent = s.tabId;
  el.sharing.textContent = s.shared ? 'shared by all tabs' : 'one per tab';
  el.connId.textContent = s.connId ?? '–';
  el.adopted.textContent = String(s.adopted);
  renderCountdown();
}

function renderCountdown() {
  const at = client.status.retryAt;
  const left = at === null || client.state !== 'RECONNECTING' ? null : Math.max(0, at - Date.now());
  el.countdown.textContent = left === null ? '–' : `${(left / 1000).toFixed(1)} s`;
  el.countdown.dataset.ms = left === null ? '' : String(Math.round(left));
}

/** @param {any} data @param {{epoch: string, offset: number}} msg */
function show(data, msg) {
  const li = document.createElement('li');
  li.dataset.testid = 'message';
  li.dataset.offset = String(msg.offset);
  li.dataset.epoch = msg.epoch;
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = String(data?.from ?? '?');
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = String(data?.text ?? JSON.stringify(data));
  const offset = document.createElement('span');
  offset.className = 'offset';
  offset.textContent = `#${msg.offset}`;
  li.append(from, text, offset);
  el.messages.append(li);
  el.messages.scrollTop = el.messages.scrollHeight;
  demo.received.push({ text: data?.text, from: data?.from, epoch: msg.epoch, offset: msg.offset });
  if (resume) sessionStorage.setItem(posKey, JSON.stringify({ epoch: msg.epoch, offset: msg.offset }));
}

/** @param {string} text */
function notice(text) {
  const li = document.createElement('li');
  li.className = 'notice';
  li.dataset.testid = 'notice';
  li.textContent = text;
  el.messages.append(li);
}

/** Sends one chat message; the returned promise settles on the server's ack. @param {string} text */
async function send(text) {
  const li = document.createElement('li');
  li.textContent = text;
  el.pending.append(li);
  try {
    return await client.publish(channel, { text, from: el.name.value || 'guest', at: Date.now() });
  } catch (err) {
    log(`publish failed: ${/** @type {Error} */ (err).message}`);
    throw err;
  } finally {
    li.remove();
  }
}
// @ts-ignore
demo.send = send;

el.compose.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = el.text.value.trim();
  if (!text) return;
  el.text.value = '';
  send(text).catch(() => {});
});
el.cut.addEventListener('click', () => {
  log('cutting the connection');
  client.cut();
});

/** @type {number|null} */
let lastRetryAt = null;
client.on('state', (state, previous) => {
  demo.states.push({ state, at: Date.now() });
  log(`${previous} → ${state}`);
});
client.on('status', (s) => {
  if (s.state === 'RECONNECTING' && s.retryAt !== null && s.retryAt !== lastRetryAt) {
    lastRetryAt = s.retryAt;
    const delay = s.retryDelay ?? s.retryAt - Date.now();
    demo.reconnects.push({ attempt: s.attempts, delay, at: Date.now() });
    log(`reconnect attempt ${s.attempts} in ${(delay / 1000).toFixed(2)} s`);
  }
  render();
});
client.on('leader', ({ leader, isLeader }) => {
  demo.leaders.push({ leader, isLeader, at: Date.now() });
  log(isLeader ? 'this tab holds the connection' : `tab ${leader} holds the connection`);
});
client.on('error', (err) => log(`error: ${err.message}`));
client.on('warning', (text) => log(`warning: ${text}`));
client.on('recovery', (info) => {
  demo.recoveries.push({ ...info, at: Date.now() });
  log(`${info.channel}: recovered: false${info.epochChanged ? ' (the server restarted)' : ''}`);
  notice('Some messages may be missing: the server could not replay everything since you left.');
});
setInterval(renderCountdown, 100);

/** Who is in the room: asked again at every join and leave, and after every reconnect. */
let membersAsked = 0;
async function showMembers() {
  const sub = /** @type {any} */ (demo.sub);
  if (!sub || client.state !== 'OPEN') return;
  const asked = ++membersAsked;
  let p;
  try {
    p = await sub.presence();
    if (asked !== membersAsked) return; // a later answer is on its way: show that one
  } catch (err) {
    el.memberCount.textContent = '–';
    log(`presence: ${/** @type {Error} */ (err).message}`);
    return;
  }
  demo.presence = { clients: p.clients, users: p.users };
  demo.members = p.members.map((/** @type {any} */ m) => ({ client: m.client, user: m.user }));
  el.memberCount.textContent = `${p.users} ${p.users === 1 ? 'person' : 'people'}`
    + (p.clients !== p.users ? ` on ${p.clients} connections` : '');
  el.members.replaceChildren(...p.members.map((/** @type {any} */ m) => {
    const span = document.createElement('span');
    span.className = 'member';
    span.dataset.testid = 'member';
    span.dataset.client = m.client;
    const you = m.client === client.status.clientId ? ' (you)' : '';
    span.textContent = `${m.user || `guest ${m.client.slice(0, 4)}`}${you}`;
    return span;
  }));
  if (p.stats_only) el.members.textContent = '(too many to list)';
}
client.on('state', (state) => {
  if (state === 'OPEN') showMembers();
});

let since = null;
if (resume) {
  try {
    since = JSON.parse(sessionStorage.getItem(posKey) || 'null');
  } catch {
    since = null;
  }
}
render();
client.connect().catch((err) => log(`gave up: ${err.message}`));
client.subscribe(channel, show, { since }).then((sub) => {
  // @ts-ignore
  demo.sub = sub;
  log(`subscribed to ${channel}`);
  sub.on('join', (/** @type {any} */ m) => {
    log(`${m.user || `guest ${m.client.slice(0, 4)}`} joined`);
    showMembers();
  });
  sub.on('leave', (/** @type {any} */ m) => {
    log(`${m.user || `guest ${m.client.slice(0, 4)}`} left`);
    showMembers();
  });
  showMembers();
}, (err) => log(`subscribe failed: ${err.message}`));
