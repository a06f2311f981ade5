/** A minimal XHTML checker for the report tests: parses what writeReport emits, strictly. */

export interface El {
  name: string;
  attrs: Record<string, string>;
  children: Array<El | string>;
}

const VOID = new Set(['area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr']);
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" };

function decode(s: string, where: number): string {
  return s.replace(/&([^;\s]*);?/g, (all, name: string) => {
    if (!all.endsWith(';')) throw new Error(`bare & at ${where}`);
    if (name in ENTITIES) return ENTITIES[name];
    if (/^#\d+$/.test(name)) return String.fromCodePoint(Number(name.slice(1)));
    throw new Error(`unknown entity &${name}; at ${where}`);
  });
}

/**
 * Parses the subset of XHTML the report emits, throwing on anything a strict XML parser (or an HTML parser
 * reading it differently) would object to: unbalanced or mismatched tags, unquoted or repeated attributes,
 * bare & or <, self-closed non-void HTML elements (an HTML parser would leave them open), unclosed void ones.
 */
export function parseXhtml(src: string): El {
  const doctype = /^<!DOCTYPE html>\s*/.exec(src);
  if (!doctype) throw new Error('missing <!DOCTYPE html>');
  let i = doctype[0].length;
  const root: El = { name: '#root', attrs: {}, children: [] };
  const stack: El[] = [root];
  const top = () => stack[stack.length - 1];
  const inSvg = () => stack.some((e) => e.name === 'svg');
  while (i < src.length) {
    const lt = src.indexOf('<', i);
    const end = lt === -1 ? src.length : lt;
    if (end > i) {
      const text = decode(src.slice(i, end), i);
      if (stack.length === 1 && text.trim()) throw new Error(`text outside the root element at ${i}`);
      top().children.push(text);
    }
    if (lt === -1) break;
    const close = /^<\/([a-zA-Z][\w:-]*)\s*>/.exec(src.slice(lt, lt + 200));
    if (close) {
      const el = stack.pop();
      if (!el || el === root || el.name !== close[1]) throw new Error(`</${close[1]}> at ${lt} closes <${el?.name}>`);
      i = lt + close[0].length;
      continue;
    }
    const open = /^<([a-zA-Z][\w:-]*)/.exec(src.slice(lt, lt + 100));
    if (!open) throw new Error(`stray < at ${lt}: ${src.slice(lt, lt + 30)}`);
    const el: El = { name: open[1], attrs: {}, children: [] };
    i = lt + open[0].length;
    const attr = /\s+([a-zA-Z_:][\w:.-]*)="([^"<]*)"/y;
    for (;;) {
      attr.lastIndex = i;
      const a = attr.exec(src);
      if (!a) break;
      if (a[1] in el.attrs) throw new Error(`repeated attribute ${a[1]} at ${i}`);
      el.attrs[a[1]] = decode(a[2], i);
      i = attr.lastIndex;
    }
    const tail = /\s*(\/?)>/y;
    tail.lastIndex = i;
    const t = tail.exec(src);
    if (!t) throw new Error(`malformed tag <${el.name}> at ${lt}: ${src.slice(lt, lt + 60)}`);
    i = tail.lastIndex;
    const selfClosed = t[1] === '/';
    if (!inSvg() && el.name !== 'svg') {
      if (selfClosed && !VOID.has(el.name)) throw new Error(`<${el.name} /> is not a void element at ${lt}`);
      if (!selfClosed && VOID.has(el.name)) throw new Error(`void <${el.name}> not self-closed at ${lt}`);
    }
    if (stack.length === 1 && root.children.some((c) => typeof c !== 'string')) throw new Error('two root elements');
    top().children.push(el);
    if (!selfClosed) stack.push(el);
  }
  if (stack.length !== 1) throw new Error(`unclosed <${top().name}>`);
  return root;
}

export function all(el: El, pred: (e: El) => boolean, out: El[] = []): El[] {
  for (const c of el.children) {
    if (typeof c === 'string') continue;
    if (pred(c)) out.push(c);
    all(c, pred, out);
  }
  return out;
}
export const byName = (el: El, name: string) => all(el, (e) => e.name === name);
export const byId = (el: El, id: string): El => {
  const found = all(el, (e) => e.attrs.id === id);
  if (found.length !== 1) throw new Error(`expected one #${id}, found ${found.length}`);
  return found[0];
};
export function text(el: El): string {
  return el.children.map((c) => (typeof c === 'string' ? c : text(c))).join('');
}
