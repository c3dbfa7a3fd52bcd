import { describe, expect, it } from 'vitest';
import {
  toolPairViolations,
  type PairingMessage,
  type ToolPairViolation,
} from '../../../src/replay/replay-audit.js';

/** An assistant message `id` making calls `calls`. */
const call = (id: string, ...calls: string[]): PairingMessage => ({
  id,
  role: 'assistant',
  tool_calls: calls.map((c) => ({ id: c })),
});
/** A tool message `id` answering `callId`. */
const result = (id: string, callId: string): PairingMessage => ({
  id,
  role: 'tool',
  tool_call_id: callId,
});
const user = (id: string): PairingMessage => ({ id, role: 'user' });

/** Parallel calls c1..c3 answered out of order with a user message between the results. */
const conversation = [
  user('u1'),
  call('a1', 'c1', 'c2', 'c3'),
  result('t2', 'c2'),
  result('t1', 'c1'),
  user('u2'),
  result('t3', 'c3'),
  user('u3'),
];
const all = (messages: readonly PairingMessage[]) => new Set(messages.map((m) => m.id));
const without = (...ids: string[]) =>
  new Set(conversation.map((m) => m.id).filter((id) => !ids.includes(id)));

describe('toolPairViolations', () => {
  it('finds nothing when calls and results are kept or removed together', () => {
    expect(toolPairViolations(conversation, all(conversation))).toEqual([]);
    // the whole unit folded, the user message between results included
    expect(toolPairViolations(conversation, without('u1', 'a1', 't2', 't1', 'u2', 't3'))).toEqual(
      [],
    );
    // only messages outside the unit removed
    expect(toolPairViolations(conversation, without('u1', 'u3'))).toEqual([]);
  });

  it('reports a call kept without one of its results, naming the call by position', () => {
    expect(toolPairViolations(conversation, without('t3'))).toEqual<ToolPairViolation[]>([
      { callMessageId: 'a1', callIndex: 2, resultId: 't3', present: 'call' },
    ]);
  });

  it('reports every result kept after its call was removed', () => {
    expect(toolPairViolations(conversation, without('u1', 'a1', 't2'))).toEqual<
      ToolPairViolation[]
    >([
      { callMessageId: 'a1', callIndex: 0, resultId: 't1', present: 'result' },
      { callMessageId: 'a1', callIndex: 2, resultId: 't3', present: 'result' },
    ]);
  });

  it('pairs by id, not position; a result before any call of its id pairs with nothing', () => {
    const messages = [result('t1', 'c1'), call('a1', 'c1'), call('a2', 'c2'), result('t2', 'c2')];
    expect(toolPairViolations(messages, new Set(['a1', 't2', 'a2']))).toEqual([]);
    expect(toolPairViolations(messages, new Set(['t1', 'a1', 't2']))).toEqual([
      { callMessageId: 'a2', callIndex: 0, resultId: 't2', present: 'result' },
    ]);
  });

  it('ignores results whose call was never accepted and calls no accepted result answers', () => {
    const messages = [call('a1', 'c1', 'c2'), result('t1', 'c1'), result('t9', 'c9')];
    expect(toolPairViolations(messages, new Set(['a1', 't1', 't9']))).toEqual([]);
    // a tool role only pairs with assistant calls: a user message carrying ids is not a call
    const odd = [{ id: 'x', role: 'user', tool_calls: [{ id: 'c1' }] }, result('t1', 'c1')];
    expect(toolPairViolations(odd, new Set(['t1']))).toEqual([]);
  });

  it('pairs a reused id with the latest call before the result: each turn stands on its own', () => {
    const turns = [
      user('q1'),
      call('a1', 'call_0'),
      result('t1', 'call_0'),
      user('q2'),
      call('a2', 'call_0'),
      result('t2', 'call_0'),
    ];
    // the first turn flushed away, the second kept: correct, nothing split
    expect(toolPairViolations(turns, new Set(['q2', 'a2', 't2']))).toEqual([]);
    // the second turn's result removed while its call stays: that split is still found
    expect(toolPairViolations(turns, new Set(['q1', 'a1', 't1', 'q2', 'a2']))).toEqual([
      { callMessageId: 'a2', callIndex: 0, resultId: 't2', present: 'call' },
    ]);
  });
});
