/**
 * A cache as a page (what `easyroutine view` writes): a table of its keys with shape, dtype and
 * size, its metadata, and the attention patterns when it holds any.
 * @module
 */
import { Tensor } from '../core/tensor';
import type { ActivationCache } from '../easyroutine/activation-cache';
import { attentionPatternsSection } from './attention';
import { escapeHtml, htmlPage } from './svg';

/** What one cache value is, in a word or two. */
function describe(value: unknown): { kind: string; shape: string; dtype: string } {
  if (value instanceof Tensor) return { kind: 'tensor', shape: `[${value.shape.join(', ')}]`, dtype: value.dtype };
  if (Array.isArray(value)) return { kind: `list of ${value.length}`, shape: '', dtype: '' };
  return { kind: value === null ? 'null' : typeof value, shape: '', dtype: '' };
}

/**
 * A self-contained HTML report of `cache`: every key with its shape, dtype and size, the metadata,
 * and the attention patterns of batch row 0 when there are `pattern_L{l}H{h}` keys.
 */
export function cacheReportPage(cache: ActivationCache, options: { title?: string } = {}): string {
  const rows = cache
    .entries()
    .map(([key, value]) => {
      const d = describe(value);
      return `<tr><td>${escapeHtml(key)}</td><td>${escapeHtml(d.kind)}</td><td>${escapeHtml(d.shape)}</td><td>${escapeHtml(d.dtype)}</td><td>${value instanceof Tensor ? escapeHtml(cache.memorySize(key)) : ''}</td><td>${escapeHtml(cache.info(key) ?? '')}</td></tr>`;
    })
    .join('\n');
  const keys = `<h2>Keys</h2><table class="lens keys"><tr><th>key</th><th>kind</th><th>shape</th><th>dtype</th><th>size</th><th>info</th></tr>\n${rows}</table>`;
  const metadata = Object.keys(cache.metadata).length ? `<h2>Metadata</h2><pre class="metadata">${escapeHtml(JSON.stringify(cache.metadata, null, 2))}</pre>` : '';
  const hasPatterns = cache.keys().some((k) => /^pattern_L\d+H\d+$/.test(k));
  let patterns = '';
  if (hasPatterns) {
    const section = attentionPatternsSection(cache);
    patterns = `<h2>Attention patterns</h2><p class="note">${escapeHtml(section.note)}</p>${section.body}`;
  }
  return htmlPage(options.title ?? 'Activation cache', `${keys}\n${metadata}\n${patterns}`, `${cache.size} keys.`);
}
