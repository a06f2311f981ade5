/**
 * Registers the gradient of every tfjs op. tfjs-core ships its gradients (`dist/register_all_gradients.js`) only
 * as ES modules with extensionless imports, which Node can neither `require` nor `import`; its CommonJS bundle
 * (what Node loads) has the ops but no gradients. The smallest CommonJS package that registers them is
 * @tensorflow/tfjs-layers: its Node bundle carries tfjs-core 4.22.0's full gradient list (the same 101 kernels as
 * the @tensorflow/tfjs umbrella, which would add webgl, converter and data) and registers it, at load, into the
 * process-global gradient registry that our one installed tfjs-core reads. The Layers API itself is not used (the
 * model is written in tfjs-core ops; see the README). Same version (4.22.0) as tfjs-core.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('@tensorflow/tfjs-layers');

export {};
