/**
 * Incremental parser for files holding one or more top-level JSON arrays (`[...]`, optionally followed by
 * more arrays), yielding one element at a time so a dataset file of any size is read in bounded memory
 * (one element's text at a time, not the whole file).
 *
 * The scanner only finds element boundaries (tracking strings, escapes and nesting depth); each element's
 * text is then handed to JSON.parse. An element that JSON.parse rejects is reported as an element error and
 * scanning goes on; text that breaks the array structure itself (no "[", a missing comma, unterminated
 * input) ends the file with an Error naming the character offset.
 */
import { createReadStream } from 'fs';

export type ArrayElement = { index: number; offset: number; value: unknown } | { index: number; offset: number; error: string };

const enum Mode {
  Outside, // between top-level arrays: whitespace or "["
  FirstOrEnd, // just after "[": an element or "]"
  Element, // after ",": an element
  In, // inside an element
  CommaOrEnd, // after an element: "," or "]"
}

const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

export class JsonArrayScanner {
  private mode = Mode.Outside;
  private parts: string[] = [];
  private depth = 0;
  private inString = false;
  private escape = false;
  /** Element kind: container ({ or [), string, or bare literal/number. */
  private kind: 'container' | 'string' | 'bare' = 'container';
  private index = 0;
  private offset = 0;
  private elementOffset = 0;
  private started = false;

  constructor(private readonly name = 'input') {}

  private fail(what: string, at: number): never {
    throw new Error(`${this.name}: not a JSON array file: ${what} at character ${at}`);
  }

  private emit(out: ArrayElement[]): void {
    const text = this.parts.join('');
    this.parts = [];
    const base = { index: this.index++, offset: this.elementOffset };
    try {
      out.push({ ...base, value: JSON.parse(text) as unknown });
    } catch (e) {
      out.push({ ...base, error: e instanceof Error ? e.message : String(e) });
    }
    this.mode = Mode.CommaOrEnd;
  }

  /** Feed the next piece of text; returns the elements completed within it. */
  push(chunk: string): ArrayElement[] {
    const out: ArrayElement[] = [];
    let start = 0; // where the current element's text begins in this chunk
    let i = 0;
    // A UTF-8 byte-order mark is allowed before the first array.
    if (!this.started && chunk.length > 0) {
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) i = 1;
    }
    for (; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      const at = this.offset + i;
      switch (this.mode) {
        case Mode.Outside:
          if (isSpace(c)) continue;
          if (c !== 0x5b) this.fail(`expected "[" but found ${JSON.stringify(chunk[i])}`, at);
          this.mode = Mode.FirstOrEnd;
          continue;
        case Mode.FirstOrEnd:
        case Mode.Element:
          if (isSpace(c)) continue;
          if (c === 0x5d) {
            if (this.mode === Mode.Element) this.fail('trailing comma before "]"', at);
            this.mode = Mode.Outside;
            continue;
          }
          this.mode = Mode.In;
          this.elementOffset = at;
          start = i;
          this.inString = c === 0x22;
          this.escape = false;
          this.kind = c === 0x7b || c === 0x5b ? 'container' : c === 0x22 ? 'string' : 'bare';
          this.depth = this.kind === 'container' ? 1 : 0;
          continue;
        case Mode.CommaOrEnd:
          if (isSpace(c)) continue;
          if (c === 0x2c) this.mode = Mode.Element;
          else if (c === 0x5d) this.mode = Mode.Outside;
          else this.fail(`expected "," or "]" but found ${JSON.stringify(chunk[i])}`, at);
          continue;
        case Mode.In:
          break;
      }
      // Inside an element.
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (c === 0x5c) this.escape = true;
        else if (c === 0x22) {
          this.inString = false;
          if (this.kind === 'string') {
            this.parts.push(chunk.slice(start, i + 1));
            this.emit(out);
          }
        }
        continue;
      }
      if (this.kind === 'bare') {
        if (c === 0x2c || c === 0x5d || isSpace(c)) {
          this.parts.push(chunk.slice(start, i));
          this.emit(out);
          i--; // the delimiter belongs to the array, not the element: read it again in CommaOrEnd
        }
        continue;
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if (c === 0x7d || c === 0x5d) {
        if (--this.depth === 0) {
          this.parts.push(chunk.slice(start, i + 1));
          this.emit(out);
        }
      }
    }
    if (this.mode === Mode.In) this.parts.push(chunk.slice(start));
    this.offset += chunk.length;
    return out;
  }

  /** Signal end of input; throws if an array or element is left open. */
  end(): void {
    if (!this.started) this.fail('empty file', 0);
    if (this.mode !== Mode.Outside) this.fail('unexpected end of input inside an array', this.offset);
  }
}

/** Stream the elements of every top-level array in `file`, numbered from 0 across arrays. */
export async function* readJsonArrayFile(file: string, chunkBytes = 1 << 20): AsyncGenerator<ArrayElement> {
  const scanner = new JsonArrayScanner(file);
  // encoding: 'utf8' makes the stream re-join multi-byte characters split across chunk boundaries.
  const stream = createReadStream(file, { encoding: 'utf8', highWaterMark: chunkBytes });
  for await (const chunk of stream) {
    for (const el of scanner.push(chunk as string)) yield el;
  }
  scanner.end();
}
