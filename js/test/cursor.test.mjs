// The channel cursor: the same verdicts as the Python client's ChannelCursor.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChannelCursor, CursorState, MAX_RESYNCS, Verdict } from '../../src/staywire/static/cursor.js';

describe('ChannelCursor', () => {
  it('delivers in order and drops duplicates', () => {
    const c = new ChannelCursor('room');
    assert.equal(c.subscribe(), null);
    assert.equal(c.onMessage('e1', 5), Verdict.DELIVER); // a live msg before the ack
    const out = c.onSubscribed('e1', 5, false);
    assert.equal(out.live, true);
    assert.equal(out.unrecovered, false); // nothing was asked
    assert.equal(c.onMessage('e1', 6), Verdict.DELIVER);
    assert.equal(c.onMessage('e1', 6), Verdict.DUPLICATE);
    assert.equal(c.onMessage('e1', 3), Verdict.DUPLICATE);
    assert.deepEqual(c.position, { epoch: 'e1', offset: 6 });
  });

  it('resyncs a live subscription that skipped offsets instead of delivering out of order', () => {
    const c = new ChannelCursor('room');
    c.subscribe();
    c.onSubscribed('e1', 6, false);
    assert.equal(c.onMessage('e1', 9), Verdict.RESYNC);
    assert.equal(c.state, CursorState.RESYNCING);
    assert.deepEqual(c.position, { epoch: 'e1', offset: 6 });
    c.onUnsubscribed();
    assert.deepEqual(c.asked, { epoch: 'e1', offset: 6 });
    assert.equal(c.onMessage('e1', 7), Verdict.DELIVER);
    // During a replay (not live yet) a hole is delivered as a GAP: the ack tells the rest.
    assert.equal(c.onMessage('e1', 9), Verdict.GAP);
  });

  it('delivers a new epoch under a live subscription, flagged', () => {
    const c = new ChannelCursor('room');
    c.subscribe();
    c.onSubscribed('e1', 3, false);
    assert.equal(c.onMessage('e2', 1), Verdict.NEW_EPOCH);
    assert.deepEqual(c.position, { epoch: 'e2', offset: 1 });
  });

  it('asks from its position after a reconnect, and is recovered', () => {
    const c = new ChannelCursor('room', { epoch: 'e1', offset: 4 });
    c.connectionLost();
    assert.equal(c.onMessage('e1', 5), Verdict.STALE);
    assert.deepEqual(c.subscribe(), { epoch: 'e1', offset: 4 });
    assert.equal(c.onMessage('e1', 5), Verdict.DELIVER);
    assert.equal(c.onMessage('e1', 6), Verdict.DELIVER);
    const out = c.onSubscribed('e1', 6, true);
    assert.equal(out.live && !out.unrecovered && !out.epochChanged, true);
    assert.equal(c.state, CursorState.LIVE);
  });

  it('reports recovered: false once when history lost some offsets', () => {
    const c = new ChannelCursor('room', { epoch: 'e1', offset: 4 });
    c.subscribe();
    assert.equal(c.onMessage('e1', 8), Verdict.GAP);
    const out = c.onSubscribed('e1', 8, false);
    assert.equal(out.unrecovered, true);
    assert.equal(out.live, true);
  });

  it('restarts from the start of a new epoch (server restart), dropping msgs until then', () => {
    const c = new ChannelCursor('room', { epoch: 'old', offset: 7 });
    c.subscribe();
    assert.equal(c.onMessage('new', 1), Verdict.STALE); // not the stream we asked about
    const out = c.onSubscribed('new', 2, false);
    assert.equal(out.unrecovered, true);
    assert.equal(out.epochChanged, true);
    assert.deepEqual(out.resyncFrom, { epoch: 'new', offset: 0 });
    assert.equal(c.state, CursorState.RESYNCING);
    assert.equal(c.onMessage('new', 3), Verdict.STALE);
    c.onUnsubscribed();
    assert.deepEqual(c.asked, { epoch: 'new', offset: 0 });
    assert.equal(c.onMessage('new', 1), Verdict.DELIVER);
    assert.equal(c.onMessage('new', 2), Verdict.DELIVER);
    const again = c.onSubscribed('new', 2, true);
    assert.equal(again.live, true);
    assert.equal(again.unrecovered, false); // reported once, at the epoch change
  });

  it('settles after MAX_RESYNCS epoch changes in a row', () => {
    const c = new ChannelCursor('room', { epoch: 'e0', offset: 1 });
    for (let i = 1; i <= MAX_RESYNCS; i += 1) {
      c.subscribe();
      c.state = CursorState.SUBSCRIBING;
      c.asked = { epoch: `e${i - 1}`, offset: 0 };
      const out = c.onSubscribed(`e${i}`, 0, false);
      assert.ok(out.resyncFrom);
      c.onUnsubscribed();
    }
    c.asked = { epoch: 'stale', offset: 0 };
    const out = c.onSubscribed('e99', 0, false);
    assert.equal(out.live, true);
  });

  it('rewinds a live subscription so another tab gets its replay', () => {
    const c = new ChannelCursor('room');
    c.subscribe();
    c.onSubscribed('e1', 10, false);
    assert.equal(c.rewind({ epoch: 'e1', offset: 12 }), false); // nothing is missing
    assert.equal(c.rewind({ epoch: 'e1', offset: 6 }), true);
    assert.equal(c.state, CursorState.RESYNCING);
    assert.equal(c.onMessage('e1', 11), Verdict.STALE);
    c.onUnsubscribed();
    assert.deepEqual(c.asked, { epoch: 'e1', offset: 6 });
    assert.equal(c.onMessage('e1', 7), Verdict.DELIVER);
  });

  it('refuses to rewind while a sub is in flight', () => {
    const c = new ChannelCursor('room');
    c.subscribe();
    assert.throws(() => c.rewind({ epoch: 'e', offset: 0 }));
  });
});
