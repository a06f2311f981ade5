/** ShapeWorld scenes as model input: rendered, preprocessed like any image, and VQ-encoded. */
import * as tf from '@tensorflow/tfjs-core';
import { loadImagePixels } from '../generate/runtime';
import { Janus4o } from '../model/janus';
import { renderScene } from './render';
import type { Scene } from './scene';

/** A ShapeWorld scene rendered as the model's input and its VQ ids (the probes' teacher-forced images); the caller owns `pixels`. */
export async function encodeScene(model: Janus4o, scene: Scene): Promise<{ ids: number[]; pixels: tf.Tensor4D }> {
  const size = model.config.imageSize;
  const pixels = await loadImagePixels(await renderScene(scene, size), size);
  const idsT = tf.tidy(() => model.vq.encode(pixels));
  const ids = Array.from(await idsT.data());
  idsT.dispose();
  return { ids, pixels };
}
