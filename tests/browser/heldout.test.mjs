// The page's reading of held-out rows (www/js/heldout.js), on histories whose answer is known.
import test from 'node:test';
import assert from 'node:assert/strict';
import { memorising, suggestedHoldout } from '../../www/js/heldout.js';

const run = (pairs) => pairs.map(([loss, held], i) => ({ step: i + 1, loss, heldout: held === null ? undefined : { loss: held } }));

test('held-out rows are suggested from 20 labels on', () => {
  assert.deepEqual([0, 19, 20, 24, 35, 100].map(suggestedHoldout), [0, 0, 2, 2, 4, 10]);
});

test('memorising: held-out loss rising past its best while training loss falls', () => {
  // Both fall: learning.
  assert.equal(memorising(run([[0.5, 0.5], [0.4, 0.45], [0.3, 0.4], [0.2, 0.38], [0.1, 0.37]])), null);
  // No held-out rows: nothing to say.
  assert.equal(memorising(run([[0.5, null], [0.1, null], [0.01, null], [0.001, null], [0.0001, null]])), null);
  // Held-out best at step 2, then up by more than 10% for 3 steps while training keeps falling.
  const m = memorising(run([[0.5, 0.5], [0.3, 0.42], [0.1, 0.45], [0.05, 0.5], [0.01, 0.55]]));
  assert.deepEqual(m, { best: 0.42, bestStep: 2, now: 0.55, trainThen: 0.3, trainNow: 0.01 });
  // Rising but within noise (under 10%): not yet.
  assert.equal(memorising(run([[0.5, 0.5], [0.3, 0.42], [0.1, 0.43], [0.05, 0.44], [0.01, 0.45]])), null);
});
