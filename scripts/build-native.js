#!/usr/bin/env node
/*
 * Builds the optional native parts with node-gyp (native/*.c -> build/Release/janus4o_native.node, the matrix
 * kernels, and janus4o_shm.node, the shared mappings of the intra-node transport), as
 * the package's `install` script. It never fails the install: without a compiler, Python or Node's headers the
 * library runs the plain wasm kernels, so this prints one line saying why and exits 0. No download: node-gyp
 * is pointed at the headers of the running Node (the nodejs package's /usr/include/node on Debian), and the
 * log is checked for one anyway. JANUS4O_NATIVE=0 skips the build. `--force` rebuilds even when up to date.
 */
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const ADDONS = ['janus4o_native.node', 'janus4o_shm.node'].map((f) => path.join(ROOT, 'build', 'Release', f));
const LOG = path.join(ROOT, 'build', 'native-build.log');
const SOURCES = ['binding.gyp', ...['addon.c', 'elementwise.c', 'elementwise.h', 'gemm.c', 'gemm.h', 'im2col.c', 'im2col.h', 'kernels.c', 'kernels.h', 'pool.c', 'pool.h', 'shm_map.c'].map((f) => path.join('native', f))];

function say(line) {
  process.stdout.write(`janus4o-tf: ${line}\n`);
}

function notBuilt(why) {
  say(`native kernels not built (${why}); the plain wasm kernels and pwrite/pread shared memory will be used`);
  process.exit(0);
}

/** node-gyp's CLI: the one npm passes to install scripts, else the copy bundled with npm next to this node. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((p) => p && fs.existsSync(p) && p.endsWith('.js')) ?? null;
}

/** A directory with include/node/node_api.h for this Node, so node-gyp need not download headers. */
function findNodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
}

function upToDate() {
  if (!ADDONS.every((a) => fs.existsSync(a))) return false;
  const built = Math.min(...ADDONS.map((a) => fs.statSync(a).mtimeMs));
  return SOURCES.every((f) => fs.statSync(path.join(ROOT, f)).mtimeMs <= built);
}

function main() {
  if (process.env.JANUS4O_NATIVE === '0') notBuilt('JANUS4O_NATIVE=0');
  if (!process.argv.includes('--force') && upToDate()) {
    say('native kernels up to date (build/Release/janus4o_native.node, janus4o_shm.node)');
    return;
  }
  // The same rule as test/native_kernels.test.ts: no working C compiler, no native kernels expected.
  const cc = process.env.CC || 'cc';
  if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status !== 0) notBuilt(`no C compiler: \`${cc} --version\` failed`);
  const gyp = findNodeGyp();
  if (!gyp) notBuilt('node-gyp not found');
  const nodedir = findNodeDir();
  if (!nodedir) notBuilt(`no Node headers next to ${process.execPath} (install the Node development headers)`);
  fs.mkdirSync(path.dirname(LOG), { recursive: true });
  const r = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`], { cwd: ROOT, encoding: 'utf8', timeout: 600_000, env: { ...process.env, npm_config_nodedir: nodedir } });
  const log = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  fs.mkdirSync(path.dirname(LOG), { recursive: true });
  fs.writeFileSync(LOG, log);
  if (/\bdownload(ing)?\b.*https?:\/\//i.test(log)) say('warning: node-gyp tried to download something; see build/native-build.log');
  if (r.error || r.status !== 0 || !ADDONS.every((a) => fs.existsSync(a))) {
    // The first line that says what went wrong: a compiler error, make's, or node-gyp's own.
    const first = log.split('\n').find((l) => /error:|make: \*\*\*|gyp ERR! stack Error|not found/i.test(l) && !l.startsWith('gyp info'));
    const why = r.error ? r.error.message : first ? first.trim().slice(0, 160) : `node-gyp exited with ${r.status}`;
    notBuilt(`${why}; log: build/native-build.log`);
  }
  say('built native kernels (build/Release/janus4o_native.node: matrix products; janus4o_shm.node: shared mappings)');
}

main();
