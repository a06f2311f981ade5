// A deterministic stand-in for a VQ encoder (ids from 8x8 block means) and a sharp image loader, shared by
// the shard tests in-process and in the child process.
const tf = require('@tensorflow/tfjs-core');
const sharp = require('sharp');

function fakeEncoder() {
  return {
    imageSize: 64,
    tokens: 64,
    codebookSize: 1024,
    fingerprint: 'fake-block-mean-v1',
    encode: (images) =>
      tf.tidy(() => {
        const pooled = tf.avgPool(images, 8, 8, 'valid'); // [B, 8, 8, 3]
        const q = tf.clipByValue(tf.floor(tf.mul(tf.add(pooled, 1), 5)), 0, 9);
        const [r, g, b] = tf.split(q, 3, 3);
        const id = tf.add(tf.add(tf.mul(r, 100), tf.mul(g, 10)), b);
        return tf.cast(tf.reshape(id, [images.shape[0], 64]), 'int32');
      }),
  };
}

async function fakeLoader(file, size) {
  const { data } = await sharp(file).resize(size, size).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return tf.tidy(() => tf.sub(tf.div(tf.tensor4d(Float32Array.from(data), [1, size, size, 3]), 127.5), 1));
}

module.exports = { fakeEncoder, fakeLoader };
