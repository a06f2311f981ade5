// Runs prepareShards from the compiled package with the test's fake encoder, and stops dead (waiting to be
// SIGKILLed) right after committing shard `STOP_AFTER`. argv: dataDir outDir stopAfter
const path = require('path');
const { readShareGPT4o } = require('../../dist/data/sharegpt4o');
const { prepareShards } = require('../../dist/data/shards');
const { fakeEncoder, fakeLoader } = require('./fake_vq');
require('../../dist/backend').initBackend('cpu').then(async () => {
  const [dataDir, outDir, stopAfter] = process.argv.slice(2);
  const { records } = await readShareGPT4o({ root: dataDir });
  await prepareShards({
    records, root: dataDir, outDir, encoder: fakeEncoder(), loadImage: fakeLoader, shardSize: 8,
    onShard: (s) => {
      if (s === Number(stopAfter)) {
        process.stdout.write('STOPPED\n');
        setInterval(() => undefined, 1000); // hang until killed
        return new Promise(() => undefined);
      }
    },
  });
  process.stdout.write('DONE\n');
});
void path;
