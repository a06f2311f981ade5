import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SPECIAL_TOKENS, TextTokenizer } from '../src/tokenizer/text';

const DIR = path.join(__dirname, 'fixtures', 'tiny-janus', 'safetensors');

// Every temporary file of this suite lives under one folder, removed at the end.
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-tok-'));
afterAll(() => fs.rmSync(TMP, { recursive: true, force: true }));
const CASES = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'tiny-janus', 'tokenizer_cases.json'), 'utf8')) as {
  text: string;
  ids: number[];
  idsWithBos: number[];
  decoded: string;
  decodedSkipSpecial: string;
}[];

function tokenizerJson(): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(DIR, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
}

describe('TextTokenizer on a DeepSeek-format tokenizer.json', () => {
  const tok = TextTokenizer.fromDir(DIR);

  test('the fixture is the DeepSeek / Janus shape: byte-level BPE, Split + ByteLevel pre-tokenizer, fullwidth specials', () => {
    const j = tokenizerJson() as { model: { type: string }; pre_tokenizer: { type: string; pretokenizers: { type: string }[] }; added_tokens: { content: string }[] };
    expect(j.model.type).toBe('BPE');
    expect(j.pre_tokenizer.pretokenizers.map((p) => p.type)).toEqual(['Split', 'Split', 'Split', 'Split', 'Split', 'Split', 'ByteLevel']);
    expect(j.added_tokens.map((a) => a.content)).toEqual(expect.arrayContaining(['<\uff5cbegin\u2581of\u2581sentence\uff5c>', '<\uff5c\u2581pad\u2581\uff5c>', '<|User|>']));
  });

  test('special-token ids come from the added tokens of the file', () => {
    expect(tok.special).toEqual({ bos: 296, eos: 297, pad: 298, boi: 299, user: 300, assistant: 301, eoi: 308, imagePlaceholder: 309 });
    expect(tok.vocabSize).toBe(310);
  });

  test('ids follow the file, never constants: renumbered added tokens give renumbered ids', () => {
    const j = tokenizerJson() as { added_tokens: { id: number; content: string }[]; model: { vocab: Record<string, number> } };
    // Swap BOS and the image placeholder, as a differently built tokenizer (Janus-Pro-7B vs 1B) could.
    const bos = j.added_tokens.find((a) => a.content === SPECIAL_TOKENS.bos)!;
    const ph = j.added_tokens.find((a) => a.content === SPECIAL_TOKENS.imagePlaceholder)!;
    [bos.id, ph.id] = [ph.id, bos.id];
    const t = new TextTokenizer({ tokenizer: j });
    expect(t.special.bos).toBe(309);
    expect(t.special.imagePlaceholder).toBe(296);
    expect(t.encode('<image_placeholder>')).toEqual([309, 296]);
  });

  test.each(CASES.map((c) => [c.text, c] as const))('encodes and decodes %j to the reference ids', (_t, c) => {
    expect(tok.encode(c.text, { bos: false })).toEqual(c.ids);
    expect(tok.encode(c.text)).toEqual(c.idsWithBos);
    expect(tok.decode(c.idsWithBos)).toBe(c.decoded);
    expect(tok.decode(c.idsWithBos, { skipSpecialTokens: true })).toBe(c.decodedSkipSpecial);
    expect(tok.decode(c.ids)).toBe(c.text);
  });

  test('BOS is prepended exactly once whether or not tokenizer.json has a BOS post-processor', () => {
    const j = tokenizerJson();
    j.post_processor = null;
    const plain = new TextTokenizer({ tokenizer: j });
    expect(plain.encode('a red square')).toEqual(tok.encode('a red square'));
    expect(tok.encode('a red square')[0]).toBe(tok.special.bos);
    expect(tok.encode('a red square').filter((i) => i === tok.special.bos)).toHaveLength(1);
  });

  test('a tokenizer without the Janus image tokens is refused, naming every missing one', () => {
    const j = tokenizerJson() as { added_tokens: { content: string }[] };
    j.added_tokens = j.added_tokens.filter((a) => a.content !== SPECIAL_TOKENS.boi && a.content !== SPECIAL_TOKENS.pad);
    expect(() => new TextTokenizer({ tokenizer: j })).toThrow(/lacks the Janus special tokens pad "<\uff5c\u2581pad\u2581\uff5c>", boi "<begin_of_image>"/);
  });

  test('processor_config tags override the default strings', () => {
    const dir = fs.mkdtempSync(path.join(TMP, 'd-'));
    fs.copyFileSync(path.join(DIR, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    fs.writeFileSync(path.join(dir, 'processor_config.json'), JSON.stringify({ image_tag: '<|ref|>', pad_tag: '<|det|>' }));
    const t = TextTokenizer.fromDir(dir);
    expect(t.special.imagePlaceholder).toBe(t.tokenId('<|ref|>'));
    expect(t.special.pad).toBe(t.tokenId('<|det|>'));
  });

  test('decoding an id the vocabulary does not have fails loudly', () => {
    expect(() => tok.decode([100000])).toThrow(/no token with id 100000/);
    expect(() => tok.decode([1.5])).toThrow(/no token with id 1.5/);
    expect(tok.decode([])).toBe('');
  });
});
