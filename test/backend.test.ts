import * as tf from '@tensorflow/tfjs-core';
import { currentBackend, initBackend } from '../src/backend';

describe('backend selection', () => {
  test('auto skips the native backends that are not installed, says why, and takes wasm', async () => {
    const lines: string[] = [];
    const choice = await initBackend('auto', (l) => lines.push(l));
    // tfjs-node(-gpu) cannot install on CI (its install script downloads libtensorflow).
    expect(choice.name).toBe('wasm');
    expect(choice.skipped.map((s) => s.candidate)).toEqual(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^backend: wasm \(skipped: @tensorflow\/tfjs-node-gpu - .+; @tensorflow\/tfjs-node - .+\); matrix kernels: .+$/);
    expect(tf.getBackend()).toBe('wasm');
    expect(currentBackend()).toEqual(choice);
  });

  test('explicit cpu and wasm work and can be switched', async () => {
    expect((await initBackend('cpu')).name).toBe('cpu');
    const a = tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync());
    expect((await initBackend('wasm')).name).toBe('wasm');
    const b = tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync());
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  test('an unavailable or unknown backend is a clear error', async () => {
    await expect(initBackend('tensorflow')).rejects.toThrow(/Backend "tensorflow" requested but unavailable: .*tfjs-node-gpu.*--backend wasm/);
    await expect(initBackend('gpu' as never)).rejects.toThrow('Unknown backend "gpu": expected one of auto, tensorflow, wasm, cpu.');
  });
});
