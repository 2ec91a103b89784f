// A tab's subscription: holds msgs while joining, delivers each once and in order.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Subscription, SubscriptionState } from '../../src/staywire/static/channel.js';

const msg = (offset, epoch = 'e') => ({ channel: 'room', epoch, offset, data: `m${offset}` });

function collect(sub) {
  const got = [];
  sub.on('message', (data, m) => got.push(m.offset));
  const recoveries = [];
  sub.on('recovery', (info) => recoveries.push(info));
  return { got, recoveries };
}

describe('Subscription', () => {
  it('holds messages until joined, then delivers what follows the answer, sorted', async () => {
    const sub = new Subscription('room');
    const { got } = collect(sub);
    sub._beginJoin();
    sub._message(msg(7));
    sub._message(msg(5));
    sub._message(msg(6));
    assert.deepEqual(got, []);
    sub._joined({ from: { epoch: 'e', offset: 5 }, recovered: false, unrecovered: false });
    assert.deepEqual(got, [6, 7]);
    assert.equal(await sub.ready, sub);
    assert.equal(sub.state, SubscriptionState.LIVE);
  });

  it('drops what it delivered already: a replay is never shown twice', () => {
    const sub = new Subscription('room', { since: { epoch: 'e', offset: 3 } });
    const { got } = collect(sub);
    assert.deepEqual(sub._beginJoin(), { epoch: 'e', offset: 3 });
    for (const o of [2, 3, 4, 5, 4, 5, 6]) sub._message(msg(o));
    sub._joined({ from: { epoch: 'e', offset: 3 }, recovered: true, unrecovered: false });
    for (const o of [5, 6, 7, 7, 8]) sub._message(msg(o));
    assert.deepEqual(got, [4, 5, 6, 7, 8]);
    assert.deepEqual(sub.position, { epoch: 'e', offset: 8 });
  });

  it('rejoins after a leader change with its own position, without losing the held ones', () => {
    const sub = new Subscription('room');
    const { got } = collect(sub);
    sub._beginJoin();
    sub._joined({ from: { epoch: 'e', offset: 0 }, recovered: false, unrecovered: false });
    sub._message(msg(1));
    sub._message(msg(2));
    // A new leader: it started from another tab's position (4) and then rewound for us.
    assert.deepEqual(sub._beginJoin(), { epoch: 'e', offset: 2 });
    for (const o of [5, 6, 3, 4, 5, 6, 7]) sub._message(msg(o));
    sub._joined({ from: { epoch: 'e', offset: 2 }, recovered: true, unrecovered: false });
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7]);
  });

  it('keeps its own filter when the answer offers an older position', () => {
    const sub = new Subscription('room', { since: { epoch: 'e', offset: 9 } });
    const { got } = collect(sub);
    sub._beginJoin();
    sub._message(msg(9));
    sub._message(msg(10));
    sub._joined({ from: { epoch: 'e', offset: 4 }, recovered: true, unrecovered: false });
    assert.deepEqual(got, [10]);
  });

  it('surfaces recovered: false as an event, and follows the new stream', () => {
    const sub = new Subscription('room', { since: { epoch: 'old', offset: 9 } });
    const { got, recoveries } = collect(sub);
    sub._beginJoin();
    sub._message(msg(1, 'new'));
    sub._message(msg(2, 'new'));
    sub._joined({ from: { epoch: 'new', offset: 0 }, recovered: false, unrecovered: true, epochChanged: true });
    assert.deepEqual(got, [1, 2]);
    assert.equal(recoveries.length, 1);
    assert.equal(recoveries[0].recovered, false);
    assert.equal(recoveries[0].epochChanged, true);
    assert.deepEqual(recoveries[0].previous, { epoch: 'old', offset: 9 });
    sub._recovery({ epochChanged: false });
    assert.equal(recoveries.length, 2);
  });

  it('accepts a new epoch while live (the hub resynced it)', () => {
    const sub = new Subscription('room');
    const { got } = collect(sub);
    sub._beginJoin();
    sub._joined({ from: { epoch: 'a', offset: 3 }, recovered: false, unrecovered: false });
    sub._message(msg(4, 'a'));
    sub._message(msg(1, 'b'));
    sub._message(msg(2, 'b'));
    sub._message(msg(1, 'b'));
    assert.deepEqual(got, [4, 1, 2]);
  });

  it('fails its ready promise and stops delivering on error or unsubscribe', async () => {
    const sub = new Subscription('room');
    const { got } = collect(sub);
    const errors = [];
    sub.on('error', (e) => errors.push(e));
    sub._fail(new Error('forbidden'));
    await assert.rejects(sub.ready, /forbidden/);
    sub._message(msg(1));
    assert.deepEqual(got, []);
    assert.equal(errors.length, 1);
    let left = 0;
    const other = new Subscription('x', { unsubscribe: async () => { left += 1; } });
    await other.unsubscribe();
    await other.unsubscribe();
    assert.equal(left, 1);
  });
});
