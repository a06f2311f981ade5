/**
 * The prompt tokenizer of a model folder, whatever its kind: a word-level tokenizer.json (closed vocabularies such
 * as ShapeWorld's) or a byte-level BPE one with its tokenizer_config.json and special_tokens_map.json (Janus-Pro).
 * Both are HF tokenizer.json files; the `model.type` field says which.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { PromptTokenizer, TextTokenizer } from './text';
import { WordTokenizer } from './word';

export const TOKENIZER_FILE = 'tokenizer.json';

/** Loads `dir/tokenizer.json`; errors name the file and what was expected. */
export function loadPromptTokenizer(dir: string): { tok: PromptTokenizer; file: string } {
  const file = path.join(dir, TOKENIZER_FILE);
  if (!fs.existsSync(file)) {
    throw new UserError(`${dir} has no ${TOKENIZER_FILE}; a model folder needs the tokenizer it was trained with (the Janus-Pro download has one).`);
  }
  try {
    const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { model?: { type?: string } };
    const tok = json.model?.type === 'WordLevel' ? WordTokenizer.load(file) : TextTokenizer.fromDir(dir);
    return { tok, file };
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${file}: ${(e as Error).message}`);
  }
}
