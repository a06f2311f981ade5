/**
 * The text tokenizer: a HF `tokenizer.json` (DeepSeek byte-level BPE for Janus) run by @huggingface/tokenizers,
 * which implements every component that format uses (Split/ByteLevel pre-tokenizers, BPE, added tokens, ByteLevel
 * decoder), so nothing here re-implements tokenisation. This wrapper adds what the library leaves to the caller:
 * explicit BOS handling (independent of whether tokenizer.json has a post-processor), special-token ids resolved
 * from the file's added tokens at load time (Janus-Pro-1B and -7B differ), and checked ids on decode.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer } from '@huggingface/tokenizers';

/** Janus / DeepSeek special-token strings (janus-spec 6.1: BOS/EOS/PAD use U+FF5C and U+2581). */
export const SPECIAL_TOKENS = {
  bos: '<\uff5cbegin\u2581of\u2581sentence\uff5c>',
  eos: '<\uff5cend\u2581of\u2581sentence\uff5c>',
  pad: '<\uff5c\u2581pad\u2581\uff5c>',
  boi: '<begin_of_image>',
  eoi: '<end_of_image>',
  imagePlaceholder: '<image_placeholder>',
  user: '<|User|>',
  assistant: '<|Assistant|>',
} as const;

export type SpecialTokenName = keyof typeof SPECIAL_TOKENS;

export interface SpecialTokenIds {
  bos: number;
  eos: number;
  pad: number;
  boi: number;
  eoi: number;
  imagePlaceholder: number;
  /** Janus-Pro role tags; absent in tokenizers whose roles are plain text (Janus-1.3B uses "User"). */
  user?: number;
  assistant?: number;
}

/** What the prompt templates need from a tokenizer: TextTokenizer (BPE tokenizer.json) and WordTokenizer have it. */
export interface PromptTokenizer {
  readonly special: SpecialTokenIds;
  readonly specialStrings: Readonly<Record<SpecialTokenName, string>>;
  readonly vocabSize: number;
  /** Ids of `text` with special tokens recognised; BOS first unless bos is false. */
  encode(text: string, opts?: { bos?: boolean }): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
}

export interface TokenizerFiles {
  /** Parsed tokenizer.json. */
  tokenizer: Record<string, unknown>;
  /** Parsed tokenizer_config.json, if any. */
  config?: Record<string, unknown>;
  /** Token strings to use instead of SPECIAL_TOKENS (e.g. processor_config's pad_tag). */
  overrides?: Partial<Record<SpecialTokenName, string>>;
}

const REQUIRED: SpecialTokenName[] = ['bos', 'eos', 'pad', 'boi', 'eoi', 'imagePlaceholder'];

function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

export class TextTokenizer implements PromptTokenizer {
  readonly special: SpecialTokenIds;
  /** The token string of each special id (after overrides). */
  readonly specialStrings: Readonly<Record<SpecialTokenName, string>>;
  private readonly tok: Tokenizer;
  private readonly added: Map<string, number>;

  constructor(files: TokenizerFiles) {
    const config = files.config ?? {};
    // Janus sets clean_up_tokenization_spaces=false; the library defaults to true, which would rewrite " ." etc.
    this.tok = new Tokenizer(files.tokenizer, { ...config, clean_up_tokenization_spaces: config.clean_up_tokenization_spaces ?? false });
    this.added = new Map();
    const addedList = files.tokenizer.added_tokens;
    if (Array.isArray(addedList)) {
      for (const a of addedList as { content?: unknown; id?: unknown }[]) {
        if (typeof a.content === 'string' && typeof a.id === 'number') this.added.set(a.content, a.id);
      }
    }
    const strings: Record<SpecialTokenName, string> = { ...SPECIAL_TOKENS };
    for (const k of ['bos', 'eos', 'pad'] as const) {
      const s = tokenString(config[`${k}_token`]);
      if (s) strings[k] = s;
    }
    Object.assign(strings, files.overrides ?? {});
    this.specialStrings = strings;
    const missing = REQUIRED.filter((k) => !this.added.has(strings[k]));
    if (missing.length) {
      throw new Error(`tokenizer.json lacks the Janus special tokens ${missing.map((k) => `${k} ${JSON.stringify(strings[k])}`).join(', ')} among its added_tokens`);
    }
    const id = (k: SpecialTokenName) => this.added.get(strings[k]);
    this.special = {
      bos: id('bos')!,
      eos: id('eos')!,
      pad: id('pad')!,
      boi: id('boi')!,
      eoi: id('eoi')!,
      imagePlaceholder: id('imagePlaceholder')!,
      user: id('user'),
      assistant: id('assistant'),
    };
  }

  /** Loads tokenizer.json (+ tokenizer_config.json, + processor_config.json's tags) from a model folder. */
  static fromDir(dir: string): TextTokenizer {
    const read = (f: string): Record<string, unknown> | undefined => {
      const p = path.join(dir, f);
      if (!fs.existsSync(p)) return undefined;
      try {
        return JSON.parse(fs.readFileSync(p, 'utf8')) as Record<string, unknown>;
      } catch (e) {
        throw new Error(`cannot parse ${p}: ${(e as Error).message}`);
      }
    };
    const tokenizer = read('tokenizer.json');
    if (!tokenizer) throw new Error(`${dir} has no tokenizer.json`);
    const proc = read('processor_config.json') ?? {};
    const overrides: Partial<Record<SpecialTokenName, string>> = {};
    const tags: [string, SpecialTokenName][] = [
      ['image_tag', 'imagePlaceholder'],
      ['image_start_tag', 'boi'],
      ['image_end_tag', 'eoi'],
      ['pad_tag', 'pad'],
    ];
    for (const [key, name] of tags) if (typeof proc[key] === 'string') overrides[name] = proc[key] as string;
    return new TextTokenizer({ tokenizer, config: read('tokenizer_config.json'), overrides });
  }

  /** Number of ids (BPE vocabulary plus added tokens). */
  get vocabSize(): number {
    return this.tok.get_vocab(true).size;
  }

  /** Token ids of `text`; added tokens in the text (e.g. `<begin_of_image>`) become their ids. BOS first unless bos=false. */
  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    return opts.bos === false ? ids : [this.special.bos, ...ids];
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    for (const i of ids) if (!Number.isInteger(i) || this.tok.id_to_token(i) === undefined) throw new Error(`tokenizer has no token with id ${i}`);
    return this.tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /** The id of a token string (vocabulary or added token), if any. */
  tokenId(token: string): number | undefined {
    return this.added.get(token) ?? this.tok.token_to_id(token);
  }
}
