/**
 * Reader for the ShareGPT-4o-Image layout (janus-spec section 9): JSON arrays of text-to-image records
 * {input_prompt, output_image} and edit records {input_prompt, input_image: [path], output_image}, image
 * paths relative to the dataset root. A record is an edit record when it has input_image (null or [] count
 * as absent, as dataset converters emit them for optional columns), whichever file it is in, so one
 * concatenated file (what the reference trainer reads) works as well as the two released files.
 *
 * Files are streamed element by element. Every record is validated; a bad one is skipped and reported with
 * its file, index, kind and reason. If the bad fraction exceeds `maxBadFraction` (default 1%) the read
 * aborts with a DatasetAbortError whose message summarises every kind of problem seen.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { readJsonArrayFile } from './sharegpt4o_json';
import { ImageCheck, PathProblemKind, resolveImagePath } from './sharegpt4o_checks';

export type { ImageCheck } from './sharegpt4o_checks';

export const T2I_FILE = 'text_to_image.json';
export const EDIT_FILE = 'text_and_image_to_image.json';

export type BadRecordKind =
  | 'invalid-json'
  | 'not-an-object'
  | 'missing-field'
  | 'wrong-type'
  | 'empty-prompt'
  | 'prompt-too-long'
  | 'too-many-input-images'
  | 'unreadable-image'
  | PathProblemKind;

export interface BadRecord {
  file: string;
  /** Position of the record in its file's array(s), from 0. */
  index: number;
  kind: BadRecordKind;
  reason: string;
}

interface RecordBase {
  prompt: string;
  /** Absolute, symlink-resolved path, checked to lie inside the root. */
  outputImage: string;
  /** Provenance: the JSON file and the record's index in it. */
  file: string;
  index: number;
}
export interface T2IRecord extends RecordBase {
  task: 't2i';
}
export interface EditRecord extends RecordBase {
  task: 'edit';
  /** Absolute, symlink-resolved paths; exactly one in the released dataset. */
  inputImages: string[];
}
export type DatasetRecord = T2IRecord | EditRecord;

export interface ReadOptions {
  /** Dataset root that image paths resolve against. Default: the directory of each JSON file. */
  root?: string;
  /** JSON files. Default: text_to_image.json and text_and_image_to_image.json under `root` (those present). */
  files?: string[];
  /** Longest prompt, in characters. Default 4096. */
  maxPromptChars?: number;
  /** Token counter for the prompt budget; with maxPromptTokens, longer prompts are rejected. */
  countTokens?: (prompt: string) => number;
  maxPromptTokens?: number;
  /** Input images allowed per edit record. Default 1 (the model's X-block layout assumes one). */
  maxInputImages?: number;
  /** Abort when bad / total exceeds this. Default 0.01. */
  maxBadFraction?: number;
  /** How hard to look at images; see ImageCheck. Default 'header'. */
  imageCheck?: ImageCheck;
  /** Image checks in flight. Default 16. */
  concurrency?: number;
  onProgress?: (recordsChecked: number) => void;
}

export interface ReadReport {
  files: string[];
  total: number;
  good: number;
  t2i: number;
  edit: number;
  bad: BadRecord[];
  byKind: Partial<Record<BadRecordKind, number>>;
  badFraction: number;
  maxBadFraction: number;
}

export class DatasetAbortError extends UserError {
  constructor(readonly report: ReadReport) {
    super(formatReport(report));
    this.name = 'DatasetAbortError';
  }
}

/** A one-paragraph-per-kind summary; `listAll` adds one line per skipped record. */
export function formatReport(report: ReadReport, options: { listAll?: boolean } = {}): string {
  const pct = (x: number): string => `${(100 * x).toFixed(2)}%`;
  const verdict = report.badFraction > report.maxBadFraction ? `exceeds the limit of ${pct(report.maxBadFraction)}; aborting` : `within the limit of ${pct(report.maxBadFraction)}; skipped`;
  const lines = [
    `ShareGPT-4o-Image: ${report.bad.length} of ${report.total} records bad (${pct(report.badFraction)}), ${verdict}. Files: ${report.files.join(', ')}`,
  ];
  for (const [kind, n] of Object.entries(report.byKind)) {
    const first = report.bad.find((b) => b.kind === kind);
    const eg = first ? ` e.g. ${path.basename(first.file)}[${first.index}]: ${first.reason}` : '';
    lines.push(`  ${kind}: ${n}${eg}`);
  }
  if (options.listAll) for (const b of report.bad) lines.push(`  skipped ${b.file}[${b.index}] ${b.kind}: ${b.reason}`);
  return lines.join('\n');
}

type Checked = { record: DatasetRecord } | { bad: Omit<BadRecord, 'file' | 'index'> };

const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

interface FieldLimits {
  maxPromptChars: number;
  maxInputImages: number;
  countTokens?: (prompt: string) => number;
  maxPromptTokens?: number;
}

/** Field-level validation, before touching the file system. */
function checkFields(value: unknown, o: FieldLimits): { prompt: string; output: string; inputs: string[] } | { kind: BadRecordKind; reason: string } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { kind: 'not-an-object', reason: `record is ${typeName(value)}, not an object` };
  const r = value as Record<string, unknown>;
  for (const field of ['input_prompt', 'output_image']) {
    if (!(field in r) || r[field] === undefined) return { kind: 'missing-field', reason: `${field} is missing` };
  }
  if (typeof r.input_prompt !== 'string') return { kind: 'wrong-type', reason: `input_prompt is ${typeName(r.input_prompt)}, not a string` };
  if (typeof r.output_image !== 'string') return { kind: 'wrong-type', reason: `output_image is ${typeName(r.output_image)}, not a string` };
  if (r.output_image === '') return { kind: 'missing-field', reason: 'output_image is empty' };
  let inputs: string[] = [];
  const ii = r.input_image;
  if (ii !== undefined && ii !== null) {
    if (!Array.isArray(ii) || !ii.every((x): x is string => typeof x === 'string')) {
      return { kind: 'wrong-type', reason: `input_image is ${typeName(ii)}, not an array of strings` };
    }
    if (ii.some((x) => x === '')) return { kind: 'missing-field', reason: 'input_image holds an empty path' };
    if (ii.length > o.maxInputImages) return { kind: 'too-many-input-images', reason: `${ii.length} input images; at most ${o.maxInputImages} supported` };
    inputs = ii;
  }
  const prompt = r.input_prompt;
  if (prompt.trim() === '') return { kind: 'empty-prompt', reason: 'input_prompt is empty' };
  if (prompt.length > o.maxPromptChars) return { kind: 'prompt-too-long', reason: `input_prompt has ${prompt.length} characters; the budget is ${o.maxPromptChars}` };
  if (o.countTokens && o.maxPromptTokens !== undefined) {
    const n = o.countTokens(prompt);
    if (n > o.maxPromptTokens) return { kind: 'prompt-too-long', reason: `input_prompt has ${n} tokens; the budget is ${o.maxPromptTokens}` };
  }
  return { prompt, output: r.output_image, inputs };
}

async function defaultFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of [T2I_FILE, EDIT_FILE]) {
    const p = path.join(root, name);
    if (await fs.stat(p).then((s) => s.isFile(), () => false)) found.push(p);
  }
  if (found.length === 0) throw new UserError(`no ${T2I_FILE} or ${EDIT_FILE} in ${root}; name the JSON files explicitly`);
  return found;
}

/** Read, validate and return every good record, in file order; see the file header. */
export async function readShareGPT4o(options: ReadOptions): Promise<{ records: DatasetRecord[]; report: ReadReport }> {
  const o: FieldLimits = {
    maxPromptChars: options.maxPromptChars ?? 4096,
    maxInputImages: options.maxInputImages ?? 1,
    countTokens: options.countTokens,
    maxPromptTokens: options.maxPromptTokens,
  };
  const maxBadFraction = options.maxBadFraction ?? 0.01;
  const mode = options.imageCheck ?? 'header';
  if (!options.root && !options.files) throw new UserError('readShareGPT4o: give a dataset root or JSON files');
  const files = (options.files ?? (await defaultFiles(options.root as string))).map((f) => path.resolve(f));

  const realRoots = new Map<string, Promise<string>>();
  const realRoot = (root: string): Promise<string> => {
    let p = realRoots.get(root);
    if (!p) {
      p = fs.realpath(root).catch(() => {
        throw new UserError(`dataset root ${root} does not exist`);
      });
      realRoots.set(root, p);
    }
    return p;
  };
  // One check per distinct image: edit sources are often shared between records.
  const imageCache = new Map<string, ReturnType<typeof resolveImagePath>>();

  const results: { file: string; index: number; checked: Checked | null }[] = [];
  const inflight: Promise<void>[] = [];
  const width = options.concurrency ?? 16;
  let checkedCount = 0;

  for (const file of files) {
    const root = path.resolve(options.root ?? path.dirname(file));
    const rroot = await realRoot(root);
    const resolveImage = (rel: string): ReturnType<typeof resolveImagePath> => {
      const key = `${root}\0${rel}`;
      let p = imageCache.get(key);
      if (!p) {
        p = resolveImagePath(root, rroot, rel, mode);
        imageCache.set(key, p);
      }
      return p;
    };
    try {
      for await (const el of readJsonArrayFile(file)) {
        const slot: (typeof results)[number] = { file, index: el.index, checked: null };
        results.push(slot);
        const done = (checked: Checked): void => {
          slot.checked = checked;
          options.onProgress?.(++checkedCount);
        };
        if ('error' in el) {
          done({ bad: { kind: 'invalid-json', reason: `record is not valid JSON: ${el.error}` } });
          continue;
        }
        const fields = checkFields(el.value, o);
        if ('kind' in fields) {
          done({ bad: fields });
          continue;
        }
        const task = (async (): Promise<void> => {
          const paths = [...fields.inputs, fields.output];
          let resolved: Awaited<ReturnType<typeof resolveImagePath>>[];
          try {
            resolved = await Promise.all(paths.map(resolveImage));
          } catch (e) {
            // e.g. EACCES on stat or open: the record is unusable, the rest of the dataset may be fine.
            done({ bad: { kind: 'unreadable-image', reason: e instanceof Error ? e.message : String(e) } });
            return;
          }
          const at = resolved.findIndex((r) => !('path' in r));
          const problem = resolved[at];
          if (problem && 'kind' in problem) {
            const which = at < fields.inputs.length ? 'input_image' : 'output_image';
            done({ bad: { kind: problem.kind, reason: `${which}: ${problem.reason}` } });
            return;
          }
          const real = resolved.map((r) => ('path' in r ? r.path : ''));
          const base = { prompt: fields.prompt, outputImage: real[real.length - 1], file, index: el.index };
          done({ record: fields.inputs.length > 0 ? { task: 'edit', inputImages: real.slice(0, -1), ...base } : { task: 't2i', ...base } });
        })();
        inflight.push(task);
        // Bound the number of open files and pending sharp calls.
        if (inflight.length >= width) await inflight.shift();
      }
    } catch (e) {
      if (e instanceof UserError) throw e;
      // Structural JSON errors and unreadable files are the whole file's problem, not a record's.
      throw new UserError(e instanceof Error ? e.message : String(e));
    }
  }
  await Promise.all(inflight);

  const records: DatasetRecord[] = [];
  const bad: BadRecord[] = [];
  const byKind: Partial<Record<BadRecordKind, number>> = {};
  for (const r of results) {
    const c = r.checked;
    if (!c) throw new Error(`internal: record ${r.file}[${r.index}] was never checked`);
    if ('record' in c) records.push(c.record);
    else {
      bad.push({ file: r.file, index: r.index, ...c.bad });
      byKind[c.bad.kind] = (byKind[c.bad.kind] ?? 0) + 1;
    }
  }
  const total = results.length;
  const report: ReadReport = {
    files,
    total,
    good: records.length,
    t2i: records.filter((r) => r.task === 't2i').length,
    edit: records.filter((r) => r.task === 'edit').length,
    bad,
    byKind,
    badFraction: total === 0 ? 0 : bad.length / total,
    maxBadFraction,
  };
  if (total === 0) throw new UserError(`no records in ${files.join(', ')}`);
  if (report.badFraction > maxBadFraction) throw new DatasetAbortError(report);
  return { records, report };
}
