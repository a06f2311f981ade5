import { lrFactor, referenceTotalSteps, warmupStepCount, WarmupCosineSchedule } from '../src/train/schedule';

describe('warmup + cosine schedule (reference get_custom_cosine_schedule_with_warmup)', () => {
  // N = 105 updates, warmup = int(0.05 * 105) = 5, cosine over the remaining 100.
  const opts = { totalSteps: 105, warmupRatio: 0.05, minLrRatio: 0.15 };

  test('warmup is linear from 0 and the first update runs at factor 0 (LambdaLR semantics)', () => {
    expect(lrFactor(0, opts)).toBe(0);
    expect(lrFactor(1, opts)).toBeCloseTo(0.2, 15);
    expect(lrFactor(4, opts)).toBeCloseTo(0.8, 15);
  });

  test('warmup end is the peak', () => {
    expect(lrFactor(5, opts)).toBe(1);
  });

  test('middle of the cosine: 0.15 + 0.85 * 0.5 = 0.575', () => {
    expect(lrFactor(55, opts)).toBeCloseTo(0.575, 12);
    // A quarter of the way: 0.15 + 0.85 * 0.5 * (1 + cos(pi/4)) = 0.15 + 0.425 * 1.7071067811865475
    expect(lrFactor(30, opts)).toBeCloseTo(0.15 + 0.425 * 1.7071067811865475, 12);
  });

  test('last update is a hair above the floor, the floor is reached at N', () => {
    // progress 0.99: 0.15 + 0.425 * (1 - cos(0.01 pi)); 1 - cos(x) = x^2/2 - x^4/24 = 0.000493480 - 0.0000000406
    expect(lrFactor(104, opts)).toBeCloseTo(0.15 + 0.425 * 0.00049344, 8);
    expect(lrFactor(105, opts)).toBeCloseTo(0.15, 15);
  });

  test('the paper run: 4,324 updates, 216 of warmup, lr 5e-6 at the peak and 7.5e-7 at the floor', () => {
    const total = referenceTotalSteps({ datasetSize: 92256, microBatch: 1, epochs: 3, gradAccum: 8, worldSize: 8 });
    expect(total).toBe(4324);
    const s = new WarmupCosineSchedule(5e-6, { totalSteps: total });
    expect(s.warmupSteps).toBe(216);
    expect(s.lr(215)).toBeCloseTo((5e-6 * 215) / 216, 20);
    expect(s.lr(216)).toBe(5e-6);
    expect(s.lr(4324)).toBeCloseTo(7.5e-7, 20);
  });

  test('warmup count truncates like Python int() on the double product', () => {
    expect(warmupStepCount(100, 0.29)).toBe(28); // 0.29 * 100 = 28.999999999999996
    expect(warmupStepCount(100, 0.07)).toBe(7); // 7.000000000000001
    expect(lrFactor(0, { totalSteps: 10, warmupRatio: 0 })).toBe(1);
  });

  test('state round trip reproduces every factor', () => {
    const s = new WarmupCosineSchedule(1e-3, { totalSteps: 1000, warmupRatio: 0.03, minLrRatio: 0.1 });
    const { schedule, position } = WarmupCosineSchedule.fromState(JSON.parse(JSON.stringify(s.state(123))));
    expect(position).toBe(123);
    for (const k of [0, 29, 30, 31, 500, 999, 1000]) expect(schedule.lr(k)).toBe(s.lr(k));
  });

  test('bad options are refused', () => {
    expect(() => lrFactor(0, { totalSteps: 0 })).toThrow(/totalSteps/);
    expect(() => lrFactor(-1, opts)).toThrow(/step/);
    expect(() => new WarmupCosineSchedule(-1, opts)).toThrow(/peak lr/);
    expect(() => lrFactor(0, { totalSteps: 10, minLrRatio: 1.5 })).toThrow(/minLrRatio/);
  });
});
