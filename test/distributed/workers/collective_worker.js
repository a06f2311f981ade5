'use strict';
// Worker process for the distributed tests. Joins the job from the environment (launcher, torchrun
// variables or Slurm), runs one scenario and writes results under TEST_OUT. Modes:
//   check  every collective on random buffers of TEST_LENGTHS; raw result bytes to files
//   loop   all-reduce fresh buffers until rank 0 sees TEST_STOP_FILE (the stop decision is itself
//          all-reduced, so every rank stops after the same iteration); last result to a file
//   fail   rank TEST_FAIL_RANK prints a message and exits 3 after the rendezvous
const fs = require('fs');
const path = require('path');
const dist = require(path.join(process.env.JANUS4O_DIST_DIR, 'index.js'));
const { randomBuffer } = require('./data.js');

const out = process.env.TEST_OUT || '.';

function save(name, arr) {
  fs.writeFileSync(path.join(out, name), Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength));
}

async function check(comm) {
  const r = comm.rank;
  const lengths = (process.env.TEST_LENGTHS || '1000').split(',').map(Number);
  for (const L of lengths) {
    const x = randomBuffer(1000 * r + L, L);
    await comm.allReduce(x);
    save(`sum-${L}-${r}.bin`, x);
    const y = randomBuffer(1000 * r + L + 1, L);
    await comm.allReduce(y, { average: true });
    save(`avg-${L}-${r}.bin`, y);
    const z = randomBuffer(1000 * r + L + 2, L);
    save(`shard-${L}-${r}.bin`, await comm.reduceScatter(z, { average: true }));
    await comm.allGatherInPlace(z);
    save(`gathered-${L}-${r}.bin`, z);
  }
  const root = comm.worldSize - 1;
  const b = r === root ? randomBuffer(777, 5000) : new Float32Array(5000);
  await comm.broadcast(b, { root });
  save(`bcast-${r}.bin`, b);
  const g = await comm.allGather(Float32Array.from([r, 2 * r]));
  await comm.barrier();
  console.log(`RESULT ${JSON.stringify({ rank: r, worldSize: comm.worldSize, gathered: Array.from(g), cuda: process.env.CUDA_VISIBLE_DEVICES || null, transport: comm.transport })}`);
}

async function loop(comm) {
  const r = comm.rank;
  const L = Number(process.env.TEST_LENGTH || 20000);
  const stopFile = process.env.TEST_STOP_FILE;
  console.log(`PID ${process.pid} rank ${r}`);
  if (process.env.TEST_PRINT_TRANSPORT) console.log(`TRANSPORT ${comm.transport}`);
  for (let i = 0; ; i++) {
    const x = randomBuffer(7919 * r + i, L);
    await comm.allReduce(x);
    const stop = Float32Array.from([r === 0 && stopFile && fs.existsSync(stopFile) ? 1 : 0]);
    await comm.allReduce(stop);
    if (i % 10 === 0) console.log(`ITER ${i}`);
    if (stop[0] > 0) {
      save(`loop-${r}.bin`, x);
      console.log(`DONE ${i}`);
      return;
    }
  }
}

async function main() {
  const mode = process.argv[2] || 'check';
  const { comm } = await dist.initDistributed({
    configFingerprint: process.env.TEST_CONFIG || 'test-config',
    overrides: { chunkElements: Number(process.env.TEST_CHUNK || 4096) },
  });
  try {
    if (mode === 'check') await check(comm);
    else if (mode === 'loop') await loop(comm);
    else if (mode === 'fail') {
      await comm.barrier();
      if (comm.rank === Number(process.env.TEST_FAIL_RANK)) {
        console.error('boom: simulated worker failure');
        process.exit(3);
      }
      await comm.barrier();
    } else throw new Error(`unknown mode ${mode}`);
  } finally {
    await comm.close();
  }
}

main().catch((e) => {
  console.error(`worker rank ${process.env.RANK}: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
