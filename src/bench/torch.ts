/**
 * The PyTorch anchor: runs ../shared/bench/torch_ref_bench.py (eager PyTorch on the CPU, the same step as
 * reference_step.ts) with Debian's python3-torch. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from that
 * command's environment only: they pin OpenBLAS to a generic kernel on some hosts, which is not what a user's
 * PyTorch would run.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { JanusConfig } from '../model/config';
import { REFERENCE_SHAPE } from './reference_step';
import { Skipped } from './util';

export interface TorchResult {
  impl: string;
  threads: number;
  msPerStep: number;
  tokensPerSecond: number;
  params: number;
}

/** Where the script lives relative to this file (src/bench or dist/bench, both two levels below the repo). */
export function defaultTorchScript(): string {
  return path.resolve(__dirname, '..', '..', '..', 'shared', 'bench', 'torch_ref_bench.py');
}

export function torchArgs(cfg: JanusConfig, threads: number, steps: number): string[] {
  const l = cfg.llm;
  const s = REFERENCE_SHAPE;
  return [
    '--hidden', l.hiddenSize, '--layers', l.numLayers, '--heads', l.numHeads, '--inter', l.intermediateSize,
    '--text-vocab', l.vocabSize, '--image-vocab', cfg.vq.codebookSize, '--code-dim', cfg.genEmbedDim,
    '--batch', s.batch, '--text-len', s.textLen, '--image-len', s.imageLen, '--steps', steps, '--threads', threads,
  ].map(String);
}

export function runTorchBench(cfg: JanusConfig, threads: number, opts: { script?: string; python?: string; steps?: number } = {}): Promise<TorchResult | Skipped> {
  const script = opts.script ?? defaultTorchScript();
  const python = opts.python ?? '/usr/bin/python3';
  if (!fs.existsSync(script)) return Promise.resolve({ skipped: `${script} not found` });
  if (!fs.existsSync(python)) return Promise.resolve({ skipped: `${python} not found (apt-get install python3-torch libopenblas0-pthread)` });
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return new Promise((resolve) => {
    execFile(python, [script, ...torchArgs(cfg, threads, opts.steps ?? 7)], { env, timeout: 300_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const why = /No module named 'torch'/.test(stderr) ? 'python3-torch is not installed (apt-get install python3-torch libopenblas0-pthread)' : `${err.message.split('\n')[0]} ${stderr.trim().split('\n').slice(-1)[0] ?? ''}`;
        resolve({ skipped: why });
        return;
      }
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        const j = JSON.parse(line) as { impl: string; threads: number; step_s: number; tokens_per_s: number; params: number };
        resolve({ impl: j.impl, threads: j.threads, msPerStep: j.step_s * 1000, tokensPerSecond: j.tokens_per_s, params: j.params });
      } catch {
        resolve({ skipped: `unexpected output from ${script}: ${line.slice(0, 200)}` });
      }
    });
  });
}
