/**
 * Opt-in multi-threaded wasm in Node (shared/tfjs-platform.md section 3). tfjs-backend-wasm 4.22 hard-codes
 * WASM_HAS_MULTITHREAD_SUPPORT=false in Node because emscripten's pthread workers are handed `blob:` URLs, which
 * Node's Worker cannot load. This writes those blobs to files instead, and makes the core count the C++ side
 * sees (it caps threads at cores/2) large enough for the requested count.
 *
 * It patches process-wide globals (Blob, URL.createObjectURL, Worker.prototype.postMessage, os.cpus during init),
 * so it is a bench option, not the library default; docs/performance.md has the measurements behind that.
 * Must run before the wasm backend initialises.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { MessagePort, Worker } from 'worker_threads';
// The real module object (not an import namespace copy): the wasm bundle calls cpus() on the same object.
import os = require('os');

/** Text of the Blobs tfjs creates while the shim is installed. */
const blobText = new WeakMap<Blob, string>();
/** File written for each recorded Blob. */
const blobFile = new WeakMap<Blob, string>();
let dir: string | null = null;
let written = 0;
let installed = false;
/** The pthread workers started so far (unref'd once the backend is up). */
const workers = new Set<Worker>();

/** The bundle's factory source refers to its rollup-renamed imports; a worker has to define them itself. */
const FACTORY_PRELUDE = "var require$$0=require('fs'),require$$1=require('path'),require$$3=require('perf_hooks'),require$$4=require('os'),commonjsGlobal=globalThis;\n";

function fileFor(blob: Blob): string {
  let file = blobFile.get(blob);
  if (file) return file;
  const text = blobText.get(blob)!;
  dir = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-wasm-threads-'));
  file = path.join(dir, `blob-${++written}.js`);
  fs.writeFileSync(file, text.startsWith('var WasmBackendModuleThreadedSimd') ? FACTORY_PRELUDE + text : text);
  blobFile.set(blob, file);
  return file;
}

function install(): void {
  if (installed) return;
  installed = true;
  const BaseBlob = globalThis.Blob;
  class RecordingBlob extends BaseBlob {
    constructor(...args: ConstructorParameters<typeof Blob>) {
      super(...args);
      const parts = args[0];
      if (parts && parts.every((p) => typeof p === 'string')) blobText.set(this, (parts as string[]).join(''));
    }
  }
  globalThis.Blob = RecordingBlob as typeof Blob;
  const createObjectURL = URL.createObjectURL.bind(URL);
  URL.createObjectURL = (obj: Blob) => (blobText.has(obj) ? fileFor(obj) : createObjectURL(obj));
  const postMessage = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function patched(this: Worker, msg: unknown, transfer?: readonly (ArrayBuffer | MessagePort)[]) {
    const m = msg as { cmd?: string; urlOrBlob?: unknown };
    if (m && m.cmd === 'load' && m.urlOrBlob instanceof BaseBlob && blobText.has(m.urlOrBlob)) {
      m.urlOrBlob = fileFor(m.urlOrBlob);
      workers.add(this);
    }
    return postMessage.call(this, msg, transfer as never);
  } as typeof Worker.prototype.postMessage;
  process.once('exit', () => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
}

/**
 * Prepares the threaded-SIMD wasm build with `threads` XNNPACK threads. Call before initBackend('wasm');
 * returns a function to call right after it, which restores os.cpus and reports the thread count obtained.
 */
export function prepareWasmThreads(threads: number): () => number {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`wasm threads must be a positive integer, got ${threads}`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  if (threads === 1) return () => wasm.getThreadsCount();
  install();
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  wasm.setThreadsCount(threads);
  const cpus = os.cpus;
  const real = cpus();
  // The C++ init caps the pool at logical cores / 2 (hyper-threading heuristics); report enough cores.
  if (real.length < 2 * threads) (os as { cpus: typeof os.cpus }).cpus = () => Array.from({ length: 2 * threads }, (_, i) => real[i % real.length]);
  return () => {
    (os as { cpus: typeof os.cpus }).cpus = cpus;
    // Idle pthread workers must not keep the process alive after the work is done; the init needed them
    // referenced while it waited for their 'loaded' replies.
    for (const w of workers) w.unref();
    return wasm.getThreadsCount();
  };
}
