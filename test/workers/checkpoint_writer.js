/**
 * Child process for the checkpoint crash test: resumes from `latest` under ROOT (after the start-up cleanup) and
 * writes checkpoints of increasing step forever (or COUNT times), each with content derived from its step, so the
 * parent can check any checkpoint it finds bit for bit. The parent SIGKILLs it at random moments.
 *
 * usage: node checkpoint_writer.js ROOT KEEP [COUNT]
 * Required as a module it only exports expectedContent, for the parent's checks.
 */
'use strict';
const fs = require('fs');
const path = require('path');

/** Deterministic checkpoint content for a step, shared by the crash-test worker and the test that checks it. */
function fill(n, seed) {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = (x / 4294967296 - 0.5) * 8;
  }
  return out;
}

function expectedContent(step) {
  const weights = new Map([
    ['language_model.model.embed_tokens.weight', { shape: [512, 256], data: fill(512 * 256, step * 7 + 1) }],
    ['gen_head.vision_head.bias', { shape: [1000], data: fill(1000, step * 7 + 2) }],
  ]);
  const total = 512 * 256 + 1000;
  const half = Math.ceil(total / 2);
  const shards = [0, 1].map((rank) => {
    const start = rank * half;
    const end = Math.min(total, start + half);
    const segments = [];
    const tensors = new Map();
    let flat = 0;
    for (const [name, t] of weights) {
      const size = t.data.length;
      const a = Math.max(start, flat);
      const b = Math.min(end, flat + size);
      if (a < b) {
        segments.push({ name, paramSize: size, offset: a - flat, length: b - a, step });
        tensors.set(`${name}.exp_avg`, fill(b - a, step * 13 + rank * 2 + 3));
        tensors.set(`${name}.exp_avg_sq`, fill(b - a, step * 13 + rank * 2 + 4).map(Math.abs));
      }
      flat += size;
    }
    const meta = { format: 'janus4o-adamw', version: 1, rank, worldSize: 2, total, start, end, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1, noDecay: ['bias'], segments };
    return { meta, tensors };
  });
  return { weights, shards };
}

/**
 * Loads the TypeScript sources directly (transpile-only, like ts-jest with isolatedModules). With a cache
 * folder, transpiled files are kept there keyed by path, size and mtime, so the repeated restarts of the crash
 * test do not each pay for loading the compiler.
 */
function installTsHook(cacheDir) {
  let ts = null;
  require.extensions['.ts'] = (m, filename) => {
    const st = fs.statSync(filename);
    const key = `${filename.replace(/[^A-Za-z0-9]/g, '_')}-${st.size}-${st.mtimeMs}.js`;
    const cached = cacheDir ? path.join(cacheDir, key) : null;
    if (cached && fs.existsSync(cached)) return m._compile(fs.readFileSync(cached, 'utf8'), filename);
    ts = ts || require('typescript');
    const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      fileName: filename,
    }).outputText;
    if (cached) {
      // Temp + rename: a worker killed mid-write must not leave a truncated cache entry.
      fs.mkdirSync(cacheDir, { recursive: true });
      const tmp = `${cached}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, out);
      fs.renameSync(tmp, cached);
    }
    return m._compile(out, filename);
  };
}

async function main() {
  installTsHook(process.env.CHECKPOINT_WRITER_CACHE);
  const ck = require(path.join(__dirname, '../../src/io/checkpoint.ts'));
  const [root, keepArg, countArg] = process.argv.slice(2);
  const keep = Number(keepArg);
  const count = countArg ? Number(countArg) : Infinity;
  fs.mkdirSync(root, { recursive: true });
  await ck.cleanStaleCheckpointFiles(root, keep);
  const latest = await ck.findLatestCheckpoint(root);
  let step = 1;
  if (latest) step = (await ck.loadCheckpoint(latest)).trainerState.step + 1;
  process.stdout.write(`ready ${step}\n`);
  for (let i = 0; i < count; i++, step++) {
    const c = expectedContent(step);
    const tmp = await ck.prepareCheckpoint(root, step);
    for (const shard of c.shards) await ck.writeOptimizerShard(tmp, shard);
    await ck.writeCheckpointFiles(tmp, {
      step,
      weights: { entries: [...c.weights].map(([name, t]) => ({ name, shape: t.shape })), read: (name) => c.weights.get(name).data },
      modelConfig: { model_type: 'multi_modality', step },
      trainConfig: { train: { lr: 0.001 } },
      trainerState: { step, epoch: Math.floor(step / 10), sampler: { epoch: 0, position: step * 8 }, rng: { s: [step, 1, 2] }, schedule: null, config_hash: 'x'.repeat(64) },
      tokenizerFiles: [],
    });
    await ck.commitCheckpoint(root, tmp, step, keep);
    process.stdout.write(`committed ${step}\n`);
  }
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${e.stack}\n`);
    process.exit(1);
  });
}

module.exports = { expectedContent };
