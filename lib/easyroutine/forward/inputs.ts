/**
 * The arguments a HookedModel forward passes to the TorchScript forward: the token ids and, to an
 * export that takes one (`forward(input_ids, attention_mask)`, as `easyroutine export` writes), the
 * attention mask. Read from the declared signature, so a mask is never passed to a forward that
 * does not take one.
 * @module
 */
import type { Model } from '../../core/model';
import { tensor, type Tensor } from '../../core/tensor';

/** Whether `model`'s forward takes an attention mask after the ids (an argument named so, or a second tensor). */
export function takesAttentionMask(model: Model): boolean {
  const match = /^forward\((.*)\)\s*->/.exec(model.signature);
  if (!match) return false;
  const args = match[1]!.split(',').map((a) => a.trim()).filter((a) => a.length > 0 && !/\bself$/.test(a));
  const second = args[1];
  return second !== undefined && (/\battention_mask\b/.test(second) || /^Tensor\b/.test(second));
}

/** A mask of ones for `ids` (`[batch, seq]`, int64). */
export function fullMask(ids: Tensor): Tensor {
  const [batch, seq] = ids.shape as [number, number];
  return tensor(new BigInt64Array(batch * seq).fill(1n), [batch, seq], { dtype: 'int64' });
}
