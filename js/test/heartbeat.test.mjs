// Heartbeat: a ping every interval, dead when nothing arrives within the timeout after one,
// and no false verdict when the page's timers were throttled or frozen.
import { describe, it, mock, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Heartbeat } from '../../src/staywire/static/heartbeat.js';

function make(options = {}) {
  const pings = [];
  const deaths = [];
  const rtts = [];
  const lates = [];
  const hb = new Heartbeat({
    interval: 30000,
    timeout: 10000,
    ping: (t) => pings.push(t),
    dead: (info) => deaths.push({ at: Date.now(), ...info }),
    rtt: (ms) => rtts.push(ms),
    late: (info) => lates.push(info),
    ...options,
  });
  return { hb, pings, deaths, rtts, lates };
}

describe('Heartbeat', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  it('pings every interval while the peer answers', () => {
    const { hb, pings, deaths } = make();
    hb.start();
    for (let i = 1; i <= 4; i += 1) {
      mock.timers.tick(30000);
      assert.equal(pings.length, i);
      mock.timers.tick(20);
      hb.pong(pings[i - 1]);
      mock.timers.tick(9980);
    }
    assert.deepEqual(deaths, []);
    assert.equal(hb.rtt, 20);
  });

  it('declares the link dead when nothing arrives within the timeout after a ping', () => {
    const { hb, pings, deaths } = make();
    hb.start();
    mock.timers.tick(30000);
    assert.deepEqual(pings, [30000]);
    mock.timers.tick(9999);
    assert.deepEqual(deaths, []);
    mock.timers.tick(1);
    assert.equal(deaths.length, 1);
    assert.equal(deaths[0].at, 40000);
    assert.equal(deaths[0].silentMs, 40000);
    assert.equal(hb.running, false);
    mock.timers.tick(100000);
    assert.equal(deaths.length, 1); // once
  });

  it('counts any traffic as proof of life, not only pongs', () => {
    const { hb, deaths } = make();
    hb.start();
    mock.timers.tick(35000);
    hb.seen(); // a `msg`, a server ping...
    mock.timers.tick(5000);
    assert.deepEqual(deaths, []);
    assert.equal(hb.awaiting, false);
  });

  it('measures the round trip from the pong of its own ping', () => {
    const { hb, pings, rtts } = make();
    hb.start();
    hb.pingNow();
    mock.timers.tick(37);
    hb.pong(pings[0]);
    assert.deepEqual(rtts, [37]);
    hb.pong('not a number');
    assert.deepEqual(rtts, [37]);
  });

  it('gives a fresh chance when its timer fired very late (a frozen or throttled tab)', () => {
    const { hb, pings, deaths, lates } = make();
    hb.start();
    mock.timers.tick(30000); // ping at 30 s, the deadline is due at 40 s
    // The page is frozen for 5 minutes: no timer runs, and nothing could be heard.
    mock.timers.setTime(340000);
    mock.timers.tick(0); // the deadline timer fires 300 s late
    assert.deepEqual(deaths, []);
    assert.equal(lates.length, 1);
    assert.equal(lates[0].lateMs, 300000);
    assert.equal(pings.length, 2); // a new ping, and a new timeout
    assert.equal(pings[1], 340000);
    mock.timers.tick(50);
    hb.pong(pings[1]); // the link was fine
    mock.timers.tick(60000);
    assert.deepEqual(deaths, []);
    assert.equal(hb.lateFires, 1);
  });

  it('still detects a dead link after the fresh chance when the timers run on time', () => {
    const { hb, deaths, lates } = make();
    hb.start();
    mock.timers.tick(30000);
    mock.timers.setTime(100000);
    mock.timers.tick(0); // late: fresh chance, ping at 100 s
    assert.equal(lates.length, 1);
    mock.timers.tick(10000); // on time, and nothing arrived
    assert.equal(deaths.length, 1);
    assert.equal(deaths[0].at, 110000);
  });

  it('bounds the fresh chances in a row (maxLateChances)', () => {
    const { hb, deaths, lates } = make({ maxLateChances: 2 });
    hb.start();
    mock.timers.tick(30000);
    for (let i = 0; i < 2; i += 1) {
      mock.timers.setTime(Date.now() + 60000); // throttled to once a minute
      mock.timers.tick(0);
    }
    assert.equal(lates.length, 2);
    assert.deepEqual(deaths, []);
    mock.timers.setTime(Date.now() + 60000);
    mock.timers.tick(0);
    assert.equal(deaths.length, 1);
  });

  it('tolerates the ordinary 1 s alignment of background timers', () => {
    const { hb, deaths, lates } = make({ lateSlack: 1000 });
    hb.start();
    mock.timers.tick(30000);
    mock.timers.setTime(Date.now() + 10000 + 900); // 900 ms late: not "very late"
    mock.timers.tick(0);
    assert.equal(lates.length, 0);
    assert.equal(deaths.length, 1);
  });

  it('stops scheduling when stopped', () => {
    const { hb, pings, deaths } = make();
    hb.start();
    hb.stop();
    mock.timers.tick(1e6);
    assert.deepEqual(pings, []);
    assert.deepEqual(deaths, []);
    hb.pingNow();
    assert.deepEqual(pings, []);
  });
});
