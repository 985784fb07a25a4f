// The induction-head study of `npm run demo`, as functions over easyroutine's API (the demo prints
// and writes what they compute; test/induction.test.ts checks them against PyTorch on the original
// nn.Module). They use only the model they are given, so the study runs on any build of the package.

/** Seeded rows of BOS, `half` random tokens in [1, vocab), the same tokens again (mulberry32). */
export function repeatedSequences({ batch, half, vocab, bos, seed }) {
  let state = seed | 0;
  const next = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: batch }, () => {
    const tokens = Array.from({ length: half }, () => 1 + Math.floor(next() * (vocab - 1)));
    return [bos, ...tokens, ...tokens];
  });
}

/** Every head's pattern at every position, and the logits, in one forward with the built-in kernels. */
export function extractPatterns(model, ids) {
  return model.forward(ids, { extractionConfig: { extractAttnPattern: true, saveLogits: true } });
}

/**
 * Per head: the induction score (mean attention from each token of the repeated half to the token
 * after its first occurrence, i - half + 1) and the previous-token score (mean attention to i - 1),
 * averaged over the batch and the query positions.
 */
export function headScores(cache, architecture, half) {
  const scores = [];
  architecture.layers.forEach((_, layer) => {
    for (let head = 0; head < architecture.nHeads; head++) {
      const pattern = cache.tensor(`pattern_L${layer}H${head}`);
      const [batch, seq] = pattern.shape;
      const values = pattern.toFloat32Array();
      const at = (b, query, key) => values[(b * seq + query) * seq + key];
      let induction = 0;
      let previous = 0;
      for (let b = 0; b < batch; b++) {
        for (let i = half + 1; i < seq; i++) induction += at(b, i, i - half + 1);
        for (let i = 1; i < seq; i++) previous += at(b, i, i - 1);
      }
      scores.push({ layer, head, name: `L${layer}H${head}`, induction: induction / (batch * (seq - half - 1)), previous: previous / (batch * (seq - 1)) });
    }
  });
  return scores;
}

/** Mean next-token loss (nats) where the next token repeats an earlier one: positions half+1 .. seq-2. */
export function repeatedHalfLoss(logitsTensor, rows, half) {
  const [batch, seq, vocab] = logitsTensor.shape;
  const logits = logitsTensor.toFloat32Array();
  let total = 0;
  let count = 0;
  for (let b = 0; b < batch; b++) {
    for (let i = half + 1; i < seq - 1; i++) {
      const row = logits.subarray((b * seq + i) * vocab, (b * seq + i + 1) * vocab);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      total += Math.log(sum) + max - row[rows[b][i + 1]];
      count++;
    }
  }
  return total / count;
}

/** The repeated-half loss with `heads` zero-ablated: every query row x every key of their pattern is 0. */
export function ablatedLoss(model, ids, rows, half, heads) {
  const cache = model.forward(ids, {
    extractionConfig: { saveLogits: true },
    interventions: heads.map((h) => ({ type: 'columns', activation: `pattern_L${h.layer}H${h.head}`, tokenPositions: ['all'], multiplicationValue: 0 })),
  });
  const loss = repeatedHalfLoss(cache.tensor('logits'), rows, half);
  cache.dispose();
  return loss;
}

/**
 * What the heatmap page of the `shown` heads says under its title: what the sequence is, what an
 * induction and a previous-token head look like on it, and each head's scores.
 */
export function heatmapNote({ shown, half, note }) {
  const scores = shown.map((h) => `${h.name}: induction ${h.induction.toFixed(3)}, previous-token ${h.previous.toFixed(3)}`).join('; ');
  return (
    `One sequence: BOS, ${half} random tokens, the same ${half} tokens again. An induction head attends from each repeated token ` +
    `to the token that followed its first occurrence (the stripe ${half - 1} below the diagonal); a previous-token head attends ` +
    `to the position just before (the first sub-diagonal). Hover a cell for its value. ${scores}. ${note}`
  );
}
