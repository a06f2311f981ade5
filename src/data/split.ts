/**
 * The held-out split of a training run: the last records of each task, in proportion to the task's share of the
 * dataset. Datasets list one task after the other (ShapeWorld and ShareGPT-4o-Image folders put text-to-image
 * first), so a plain "last N records" would hold out edits only and never measure prompt use; record order within
 * a task is random, so a task's tail is a fair sample of it. A single-task dataset gets its last N records.
 */
import { Task } from './batch';

export interface HeldOutSplit {
  /** Dataset indices trained on, in dataset order. */
  train: number[];
  /** Dataset indices held out, in dataset order. */
  held: number[];
}

export function splitHeldOut(tasks: readonly Task[], heldN: number): HeldOutSplit {
  if (!Number.isInteger(heldN) || heldN < 0 || heldN > tasks.length) throw new RangeError(`held-out count ${heldN} must be an integer in 0..${tasks.length}`);
  const byTask = new Map<Task, number[]>();
  tasks.forEach((t, i) => byTask.set(t, [...(byTask.get(t) ?? []), i]));
  const groups = [...byTask.values()].sort((a, b) => b.length - a.length);
  // Proportional shares, rounded down; what rounding leaves goes to the largest tasks first.
  const share = groups.map((g) => Math.floor((heldN * g.length) / tasks.length));
  for (let left = heldN - share.reduce((a, b) => a + b, 0), j = 0; left > 0; j = (j + 1) % groups.length) {
    if (share[j] < groups[j].length) {
      share[j]++;
      left--;
    }
  }
  const isHeld = new Uint8Array(tasks.length);
  groups.forEach((g, j) => g.slice(g.length - share[j]).forEach((i) => (isHeld[i] = 1)));
  const train: number[] = [];
  const held: number[] = [];
  tasks.forEach((_, i) => (isHeld[i] ? held : train).push(i));
  return { train, held };
}
