/**
 * Registers the gradient of every tfjs op. tfjs-core's CommonJS bundle (what Node loads) ships the ops but not
 * their gradients (only its ESM build has `register_all_gradients`, which Node cannot require); the
 * @tensorflow/tfjs CommonJS bundle registers all of them into tfjs' process-global gradient registry, which
 * the tfjs-core copy we use reads. Same version (4.22.0), one installed tfjs-core.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('@tensorflow/tfjs');

export {};
