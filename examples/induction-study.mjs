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

function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

/**
 * A self-contained HTML page (inline SVG: no script, no network) with the pattern of each head in
 * `shown` on batch row 0, token labels on both axes.
 */
export function heatmapPage({ title, cache, shown, labels, half, note }) {
  const seq = labels.length;
  const cell = 16;
  const margin = 34;
  const heatmap = (h) => {
    const pattern = cache.tensor(`pattern_L${h.layer}H${h.head}`).toFloat32Array();
    const size = margin + seq * cell;
    const parts = [];
    for (let q = 0; q < seq; q++) {
      for (let k = 0; k < seq; k++) {
        const v = pattern[q * seq + k];
        const shade = Math.round(255 * (1 - Math.min(1, v)));
        parts.push(`<rect x="${margin + k * cell}" y="${margin + q * cell}" width="${cell}" height="${cell}" fill="rgb(${shade},${shade},255)"><title>query ${q} (${escape(labels[q])}) → key ${k} (${escape(labels[k])}): ${v.toFixed(3)}</title></rect>`);
      }
      parts.push(`<text x="${margin - 3}" y="${margin + q * cell + 12}" text-anchor="end">${escape(labels[q])}</text>`);
      parts.push(`<text transform="translate(${margin + q * cell + 11},${margin - 3}) rotate(-90)">${escape(labels[q])}</text>`);
    }
    return `<figure><figcaption><b>${h.name}</b>: induction ${h.induction.toFixed(3)}, previous-token ${h.previous.toFixed(3)}</figcaption>
<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" font-size="9" font-family="monospace">${parts.join('')}</svg></figure>`;
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:80em}figure{display:inline-block;margin:0 2em 2em 0;vertical-align:top}figcaption{margin-bottom:.5em}</style></head>
<body><h1>${escape(title)}</h1>
<p>Attention patterns on one sequence: BOS, ${half} random tokens, the same ${half} tokens again. Rows are queries and
columns keys, labelled with token ids; darker is more attention. An induction head attends from each repeated token to
the token that followed its first occurrence (the stripe ${half - 1} below the diagonal); a previous-token head attends
to the position just before (the first sub-diagonal). Hover a cell for its value.</p>
${shown.map(heatmap).join('\n')}
<p>${escape(note)}</p>
</body></html>
`;
}
