/**
 * Per-path checks of the ShareGPT-4o-Image reader: that an image path stays inside the dataset root (also
 * after symlinks are resolved) and that the file is a whole, decodable image. Split from sharegpt4o.ts so the
 * record logic and the file-system logic each read on their own.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import sharp from 'sharp';

export type PathProblemKind =
  | 'absolute-path'
  | 'path-escape'
  | 'symlink-escape'
  | 'missing-image'
  | 'not-an-image'
  | 'truncated-image'
  | 'corrupt-image';

export interface PathProblem {
  kind: PathProblemKind;
  reason: string;
}

/**
 * 'header' (default): sharp reads the header, and the file's end is checked for the format's trailer (PNG
 * IEND, JPEG EOI, GIF ";", WebP RIFF length), which catches truncation without decoding pixels.
 * 'decode': also decode every pixel (slow; catches corruption inside the data). 'none': existence only.
 */
export type ImageCheck = 'header' | 'decode' | 'none';

/** Whether `p` names a location on its own, independent of the root (POSIX, Windows drive or UNC). */
export function isAbsoluteLike(p: string): boolean {
  return path.isAbsolute(p) || path.win32.isAbsolute(p) || /^[a-zA-Z]:/.test(p);
}

function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel);
}

type Format = 'png' | 'jpeg' | 'gif' | 'webp' | 'bmp' | 'tiff';

function sniff(head: Buffer): Format | null {
  const has = (bytes: number[], at = 0): boolean => bytes.every((b, k) => head[at + k] === b);
  if (has([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (has([0xff, 0xd8, 0xff])) return 'jpeg';
  if (has([0x47, 0x49, 0x46, 0x38])) return 'gif';
  if (has([0x52, 0x49, 0x46, 0x46]) && has([0x57, 0x45, 0x42, 0x50], 8)) return 'webp';
  if (has([0x42, 0x4d])) return 'bmp';
  if (has([0x49, 0x49, 0x2a, 0x00]) || has([0x4d, 0x4d, 0x00, 0x2a])) return 'tiff';
  return null;
}

/** Why the file's end shows it was cut short, or null if it looks whole (or the format has no trailer). */
function truncation(format: Format, head: Buffer, tail: Buffer, size: number): string | null {
  switch (format) {
    case 'png': {
      const iend = [0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82];
      const ok = tail.length >= 8 && iend.every((b, k) => tail[tail.length - 8 + k] === b);
      return ok ? null : 'PNG ends without its IEND chunk';
    }
    case 'jpeg': {
      // Encoders may pad after the end-of-image marker, so look for it near the end rather than at it.
      for (let k = tail.length - 2; k >= 0; k--) if (tail[k] === 0xff && tail[k + 1] === 0xd9) return null;
      return 'JPEG ends without its end-of-image marker';
    }
    case 'gif':
      return tail[tail.length - 1] === 0x3b ? null : 'GIF ends without its trailer';
    case 'webp': {
      const declared = head.readUInt32LE(4) + 8;
      return declared <= size ? null : `WebP declares ${declared} bytes but the file has ${size}`;
    }
    default:
      return null;
  }
}

async function readEnds(file: string, size: number): Promise<{ head: Buffer; tail: Buffer }> {
  const fh = await fs.open(file, 'r');
  try {
    const head = Buffer.alloc(Math.min(32, size));
    await fh.read(head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(32, size));
    await fh.read(tail, 0, tail.length, size - tail.length);
    return { head, tail };
  } finally {
    await fh.close();
  }
}

/** Check that `file` (already known to be a regular file) is a complete image. */
export async function checkImageFile(file: string, size: number, mode: ImageCheck): Promise<PathProblem | null> {
  if (mode === 'none') return null;
  if (size === 0) return { kind: 'not-an-image', reason: 'empty file' };
  const { head, tail } = await readEnds(file, size);
  const format = sniff(head);
  let meta: sharp.Metadata;
  try {
    meta = await sharp(file).metadata();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // An image signature with an unreadable header is a damaged image; no signature at all is something else.
    return format
      ? { kind: 'truncated-image', reason: `${format} header unreadable (${size} bytes): ${msg}` }
      : { kind: 'not-an-image', reason: `not a recognised image format: ${msg}` };
  }
  if (!meta.width || !meta.height) return { kind: 'corrupt-image', reason: 'image has no dimensions' };
  const cut = format ? truncation(format, head, tail, size) : null;
  if (cut) return { kind: 'truncated-image', reason: `${cut} (${size} bytes)` };
  if (mode === 'decode') {
    try {
      await sharp(file).raw().toBuffer();
    } catch (e) {
      return { kind: 'corrupt-image', reason: `decode failed: ${e instanceof Error ? e.message : String(e)}` };
    }
  }
  return null;
}

/**
 * Resolve a record's image path against the dataset root. `realRoot` is the root after fs.realpath.
 * Returns the real (symlink-free) path or the problem.
 */
export async function resolveImagePath(
  root: string,
  realRoot: string,
  rel: string,
  mode: ImageCheck,
): Promise<{ path: string } | PathProblem> {
  if (isAbsoluteLike(rel)) return { kind: 'absolute-path', reason: `image path ${JSON.stringify(rel)} is absolute` };
  const lexical = path.resolve(root, rel);
  if (!inside(path.resolve(root), lexical)) return { kind: 'path-escape', reason: `image path ${JSON.stringify(rel)} leaves the dataset root` };
  let real: string;
  try {
    real = await fs.realpath(lexical);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { kind: 'missing-image', reason: `image ${JSON.stringify(rel)} not found${code && code !== 'ENOENT' ? ` (${code})` : ''}` };
  }
  if (!inside(realRoot, real)) return { kind: 'symlink-escape', reason: `image path ${JSON.stringify(rel)} resolves to ${real}, outside the dataset root` };
  const st = await fs.stat(real);
  if (!st.isFile()) return { kind: 'not-an-image', reason: `image path ${JSON.stringify(rel)} is not a regular file` };
  const problem = await checkImageFile(real, st.size, mode);
  return problem ?? { path: real };
}
