/**
 * Prompt formats of Janus / Janus-Pro / Janus-4o (janus-spec 6.3, 7.1, 8.1, 8.4), as exact strings and as token
 * ids with the image blocks located. The image-token count `n` always comes from the model config
 * (imageTokenCount(cfg)): 576 for Janus-Pro at 384 px, other values for small models.
 *
 * The id builders tokenise the same strings as the string builders (a test holds them equal); they assemble the
 * ids around the image blocks only so the block positions are known without searching, which matters because a
 * user prompt may itself contain tag text.
 */
import { PromptTokenizer, SPECIAL_TOKENS } from './text';

export interface TemplateTags {
  user: string;
  assistant: string;
  boi: string;
  eoi: string;
  placeholder: string;
  pad: string;
  eos: string;
}

/** Janus-Pro / Janus-4o roles and tags. Janus-1.3B used the roles "User" / "Assistant". */
export const JANUS_PRO_TAGS: Readonly<TemplateTags> = {
  user: SPECIAL_TOKENS.user,
  assistant: SPECIAL_TOKENS.assistant,
  boi: SPECIAL_TOKENS.boi,
  eoi: SPECIAL_TOKENS.eoi,
  placeholder: SPECIAL_TOKENS.imagePlaceholder,
  pad: SPECIAL_TOKENS.pad,
  eos: SPECIAL_TOKENS.eos,
};

/** VLChatProcessor's system prompt, used for understanding (J:proc). */
export const DEFAULT_SYSTEM_PROMPT =
  'You are a helpful language and vision assistant. You are able to understand the visual content that the user provides, and assist the user with a variety of tasks using natural language.';

export interface ChatMessage {
  role: string;
  content: string;
}

/** Half-open [start, end) range of sequence positions. */
export type Span = [number, number];

/** Python's str.strip(): the reference strips every message and the final prompt with it. */
function strip(s: string): string {
  return s.trim();
}

/**
 * The "deepseek" SFT format (J:conv): optional system prompt + "\n\n", then per message `role: content` followed
 * by "\n\n" after even-indexed (user) turns and EOS after odd-indexed (assistant) turns; an empty message adds
 * just `role:`. Contents and the whole result are stripped.
 */
export function sftFormat(messages: readonly ChatMessage[], system = '', eos: string = SPECIAL_TOKENS.eos): string {
  let out = system ? `${system}\n\n` : '';
  messages.forEach((m, i) => {
    const content = strip(m.content);
    out += content ? `${m.role}: ${content}${i % 2 === 0 ? '\n\n' : eos}` : `${m.role}:`;
  });
  return strip(out);
}

/** Text-to-image prompt: `<|User|>: {prompt}\n\n<|Assistant|>:<begin_of_image>` (no space before the tag). */
export function t2iPrompt(prompt: string, tags: TemplateTags = JANUS_PRO_TAGS): string {
  return sftFormat([{ role: tags.user, content: prompt }, { role: tags.assistant, content: '' }], '', tags.eos) + tags.boi;
}

/** The E then X prefix of one input image: BOI + n*PH + EOI + BOI + n*PAD + EOI (janus-spec 8.1). */
export function editImagePrefix(n: number, tags: TemplateTags = JANUS_PRO_TAGS): string {
  checkN(n);
  return `${tags.boi}${tags.placeholder.repeat(n)}${tags.eoi}${tags.boi}${tags.pad.repeat(n)}${tags.eoi}`;
}

/** Janus-4o TI2I prompt with one input image: `<|User|>: {E,X prefix}{instruction}\n\n<|Assistant|>:<begin_of_image>`. */
export function editPrompt(instruction: string, n: number, tags: TemplateTags = JANUS_PRO_TAGS): string {
  return sftFormat([{ role: tags.user, content: editImagePrefix(n, tags) + instruction }, { role: tags.assistant, content: '' }], '', tags.eos) + tags.boi;
}

/**
 * Understanding prompt before image expansion: `{system}\n\n<|User|>: <image_placeholder>\n{question}\n\n<|Assistant|>:`.
 * Tokenise it with buildUnderstandingIds, which expands the placeholder to BOI + n*PH + EOI.
 */
export function understandingPrompt(question: string, opts: { system?: string; tags?: TemplateTags } = {}): string {
  const tags = opts.tags ?? JANUS_PRO_TAGS;
  const system = opts.system ?? DEFAULT_SYSTEM_PROMPT;
  return sftFormat([{ role: tags.user, content: `${tags.placeholder}\n${question}` }, { role: tags.assistant, content: '' }], system, tags.eos);
}

function checkN(n: number): void {
  if (!Number.isInteger(n) || n <= 0) throw new Error(`image token count must be a positive integer, got ${n}`);
}

function tagsOf(tok: PromptTokenizer): TemplateTags {
  const s = tok.specialStrings;
  return { user: s.user, assistant: s.assistant, boi: s.boi, eoi: s.eoi, placeholder: s.imagePlaceholder, pad: s.pad, eos: s.eos };
}

/** T2I ids (BOS first, BOI last). */
export function buildT2IIds(tok: PromptTokenizer, prompt: string): number[] {
  return tok.encode(t2iPrompt(prompt, tagsOf(tok)));
}

export interface EditIds {
  ids: number[];
  /** The n `<image_placeholder>` positions that carry the semantic (SigLIP -> aligner) embeddings E. */
  eBlock: Span;
  /** The n pad positions that carry the VQ-token embeddings X of the input image. */
  xBlock: Span;
}

/** TI2I ids for one input image (BOS first, BOI last), with the E and X blocks located. */
export function buildEditIds(tok: PromptTokenizer, instruction: string, n: number): EditIds {
  checkN(n);
  const tags = tagsOf(tok);
  const sp = tok.special;
  // Added tokens split the text before BPE, so encoding the pieces between them equals encoding the whole.
  const head = tok.encode(`${tags.user}: `);
  // The message is stripped as a whole; its start is the BOI tag, so only the instruction's end can change.
  const tail = tok.encode(`${instruction.trimEnd()}\n\n${tags.assistant}:`, { bos: false });
  const e0 = head.length + 1;
  const x0 = e0 + n + 2;
  const ids = [...head, sp.boi, ...new Array<number>(n).fill(sp.imagePlaceholder), sp.eoi, sp.boi, ...new Array<number>(n).fill(sp.pad), sp.eoi, ...tail, sp.boi];
  return { ids, eBlock: [e0, e0 + n], xBlock: [x0, x0 + n] };
}

/**
 * The three TI2I CFG rows of janus-spec 8.4, ordered [full, part, uncond]. full and part have the same ids (the X
 * block holds pads either way); they differ in what is injected, which the flags say: full gets E and X, part
 * only E (X stays pad embeddings), uncond neither (its ids are all pad between BOS and BOI).
 */
export function editCfgRows(edit: EditIds, padId: number): { ids: number[][]; injectE: boolean[]; injectX: boolean[] } {
  return { ids: [edit.ids.slice(), edit.ids.slice(), uncondIds(edit.ids, padId)], injectE: [true, true, false], injectX: [true, false, false] };
}

export interface UnderstandingIds {
  ids: number[];
  /** The n placeholder positions that carry the image features. */
  imageBlock: Span;
}

/** Understanding ids: the prompt tokenised, its single placeholder expanded to BOI + n*PH + EOI (J:proc add_image_token). */
export function buildUnderstandingIds(tok: PromptTokenizer, question: string, n: number, opts: { system?: string } = {}): UnderstandingIds {
  checkN(n);
  const sp = tok.special;
  const base = tok.encode(understandingPrompt(question, { system: opts.system, tags: tagsOf(tok) }));
  const at = base.indexOf(sp.imagePlaceholder);
  if (at < 0 || base.indexOf(sp.imagePlaceholder, at + 1) >= 0) throw new Error('understanding prompt must hold exactly one image placeholder (is there one in the question text?)');
  const ids = [...base.slice(0, at), sp.boi, ...new Array<number>(n).fill(sp.imagePlaceholder), sp.eoi, ...base.slice(at + 1)];
  return { ids, imageBlock: [at + 1, at + 1 + n] };
}

/** The CFG unconditional row: positions 1..L-2 set to pad, BOS and the final BOI kept (janus-spec 7.1, 8.4). */
export function uncondIds(ids: readonly number[], padId: number): number[] {
  if (ids.length < 2) throw new Error('a CFG row needs at least BOS and BOI');
  return ids.map((id, i) => (i === 0 || i === ids.length - 1 ? id : padId));
}

/** Training rows: n pad slots after the final BOI, where the target image tokens' embeddings go (janus-spec 8.1). */
export function appendTargetSlots(ids: readonly number[], n: number, padId: number): { ids: number[]; target: Span } {
  checkN(n);
  return { ids: [...ids, ...new Array<number>(n).fill(padId)], target: [ids.length, ids.length + n] };
}
