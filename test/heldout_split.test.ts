import { Task } from '../src/data/batch';
import { splitHeldOut } from '../src/data/split';

const tasks = (t2i: number, edit: number): Task[] => [...new Array<Task>(t2i).fill('t2i'), ...new Array<Task>(edit).fill('edit')];

describe('splitHeldOut', () => {
  test('a mixed dataset listed task by task holds out the tail of each task in proportion', () => {
    const { train, held } = splitHeldOut(tasks(1500, 1500), 100);
    expect(held).toEqual([...Array.from({ length: 50 }, (_, i) => 1450 + i), ...Array.from({ length: 50 }, (_, i) => 2950 + i)]);
    expect(train).toHaveLength(2900);
    expect(new Set([...train, ...held]).size).toBe(3000);
    expect(train.every((v, i) => i === 0 || v > train[i - 1])).toBe(true);
  });

  test('uneven shares round to the requested total; a single-task dataset keeps its last N', () => {
    const { held } = splitHeldOut(tasks(700, 300), 7);
    expect(held.filter((i) => i < 700)).toEqual([695, 696, 697, 698, 699]);
    expect(held.filter((i) => i >= 700)).toEqual([998, 999]);
    expect(splitHeldOut(tasks(10, 0), 3).held).toEqual([7, 8, 9]);
    expect(splitHeldOut(tasks(10, 0), 0)).toEqual({ train: Array.from({ length: 10 }, (_, i) => i), held: [] });
  });

  test('a count outside the dataset is refused', () => {
    expect(() => splitHeldOut(tasks(3, 3), 7)).toThrow(/held-out count 7/);
  });
});
