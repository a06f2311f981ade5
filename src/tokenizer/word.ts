/**
 * A word-level tokenizer for small closed vocabularies (ShapeWorld's ~100 words), stored as a HF tokenizer.json
 * with a `WordLevel` model and the Janus special tokens as added tokens. @huggingface/tokenizers (JS) has no
 * WordLevel model, so this one is ours; BPE tokenizer.json files (the real Janus tokenizer) go through
 * @huggingface/tokenizers in text.ts.
 */
import * as fs from 'fs';
import { PromptTokenizer, SPECIAL_TOKENS, SpecialTokenIds, SpecialTokenName } from './text';

const UNK = '[UNK]';

interface WordLevelJson {
  version: string;
  added_tokens: { id: number; content: string; special: boolean; single_word: boolean; lstrip: boolean; rstrip: boolean; normalized: boolean }[];
  normalizer: { type: 'Lowercase' };
  pre_tokenizer: { type: 'Whitespace' };
  model: { type: 'WordLevel'; vocab: Record<string, number>; unk_token: string };
}

export class WordTokenizer implements PromptTokenizer {
  readonly special: Required<SpecialTokenIds>;
  readonly specialStrings: Readonly<Record<SpecialTokenName, string>> = SPECIAL_TOKENS;
  private readonly idOf: Map<string, number>;
  private readonly tokenOf: string[];
  private readonly specialRe: RegExp;

  private constructor(readonly json: WordLevelJson, readonly source: string) {
    this.idOf = new Map<string, number>();
    this.tokenOf = [];
    for (const [tok, id] of Object.entries(json.model.vocab)) {
      this.idOf.set(tok, id);
      this.tokenOf[id] = tok;
    }
    for (const t of json.added_tokens) {
      this.idOf.set(t.content, t.id);
      this.tokenOf[t.id] = t.content;
    }
    const special = {} as Required<SpecialTokenIds>;
    for (const [name, tok] of Object.entries(SPECIAL_TOKENS) as [SpecialTokenName, string][]) {
      const id = this.idOf.get(tok);
      if (id === undefined) throw new Error(`${source}: tokenizer has no special token ${tok} (${name})`);
      special[name] = id;
    }
    this.special = special;
    const esc = json.added_tokens.map((t) => t.content.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).sort((a, b) => b.length - a.length);
    this.specialRe = new RegExp(`(${esc.join('|')})`);
  }

  get vocabSize(): number {
    return this.tokenOf.length;
  }

  /** Builds a tokenizer over `words` (plus punctuation and the Janus specials), ids in a stable order. */
  static build(words: readonly string[]): WordTokenizer {
    const added = Object.values(SPECIAL_TOKENS);
    const vocab: Record<string, number> = {};
    let id = 0;
    const addedTokens = added.map((content) => ({ id: id++, content, special: true, single_word: false, lstrip: false, rstrip: false, normalized: false }));
    for (const w of [UNK, ':', ',', '.', ...new Set(words.map((w) => w.toLowerCase()))]) if (!(w in vocab)) vocab[w] = id++;
    return new WordTokenizer({ version: '1.0', added_tokens: addedTokens, normalizer: { type: 'Lowercase' }, pre_tokenizer: { type: 'Whitespace' }, model: { type: 'WordLevel', vocab, unk_token: UNK } }, 'built-in word tokenizer');
  }

  static fromJSON(text: string, source: string): WordTokenizer {
    let json: WordLevelJson;
    try {
      json = JSON.parse(text) as WordLevelJson;
    } catch (e) {
      throw new Error(`${source}: not valid JSON (${(e as Error).message})`);
    }
    if (json?.model?.type !== 'WordLevel' || typeof json.model.vocab !== 'object' || !Array.isArray(json.added_tokens)) {
      throw new Error(`${source}: expected a tokenizer.json with a WordLevel model and added_tokens`);
    }
    return new WordTokenizer(json, source);
  }

  static load(file: string): WordTokenizer {
    return WordTokenizer.fromJSON(fs.readFileSync(file, 'utf8'), file);
  }

  toJSON(): string {
    return JSON.stringify(this.json, null, 1);
  }

  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const ids: number[] = opts.bos === false ? [] : [this.special.bos];
    const unk = this.idOf.get(UNK)!;
    for (const piece of text.split(this.specialRe)) {
      if (piece === '') continue;
      const sid = this.json.added_tokens.find((t) => t.content === piece)?.id;
      if (sid !== undefined) {
        ids.push(sid);
        continue;
      }
      // HF Whitespace pre-tokenizer: runs of word characters, or runs of other non-space characters.
      for (const w of piece.toLowerCase().match(/\w+|[^\w\s]+/g) ?? []) ids.push(this.idOf.get(w) ?? unk);
    }
    return ids;
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    const specials = new Set(Object.values(this.special));
    return ids
      .filter((i) => !(opts.skipSpecialTokens && specials.has(i)))
      .map((i) => this.tokenOf[i] ?? UNK)
      .join(' ');
  }
}
