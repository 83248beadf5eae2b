// Reading held-out rows during a run: how many to set aside, and when the numbers say the model
// is memorising its training rows rather than learning what they have in common. No DOM here.

/** Labels to set aside when the user has not chosen: none below 20 (every label counts then),
 *  else a tenth, at least 2. */
export function suggestedHoldout(rows) {
  return rows >= 20 ? Math.max(2, Math.round(rows / 10)) : 0;
}

/** `history`: the run's steps ({ step, loss, heldout: { loss } }). Memorising is the held-out
 *  loss at least `patience` steps past its best and 10% above it while the training loss kept
 *  falling. Returns { best, bestStep, now, trainThen, trainNow } when that holds, else null. */
export function memorising(history, patience = 3) {
  const held = history.filter((m) => m.heldout && Number.isFinite(m.heldout.loss));
  if (held.length <= patience) return null;
  let best = held[0];
  for (const m of held) if (m.heldout.loss < best.heldout.loss) best = m;
  const last = held[held.length - 1];
  const rising = last.step - best.step >= patience && last.heldout.loss > best.heldout.loss * 1.1;
  const trainFalling = last.loss < best.loss;
  return rising && trainFalling
    ? { best: best.heldout.loss, bestStep: best.step, now: last.heldout.loss, trainThen: best.loss, trainNow: last.loss }
    : null;
}
