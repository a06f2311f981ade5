/**
 * The README's commands work on a fresh clone: the input images its `edit` examples name and the images it shows
 * ship with the repository (nothing under data/, which only `synth` creates), and the `npm run edit` example's
 * input is the ShapeWorld scene it claims to be (edit 2 of `synth --seed 1`, rendered at 64 px).
 */
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { renderScene } from '../src/shapeworld/render';
import { makeEditSample } from '../src/shapeworld/samples';

const ROOT = path.resolve(__dirname, '..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** Files tracked by git (what a clone has), relative to the repository root. */
function tracked(): Set<string> {
  return new Set(execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean));
}

test("the README's --image inputs and shown images are in the repository", () => {
  const images = [...README.matchAll(/--image (\S+)/g)].map((m) => m[1]);
  const shown = [...README.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]);
  expect(images.length).toBeGreaterThanOrEqual(2);
  expect(shown).toContain('docs/images/report-tiny.png');
  const files = tracked();
  // git ls-files lists only committed or staged files; a new file of the working tree counts if git does not ignore it.
  const inClone = (f: string) => files.has(f) || (fs.existsSync(path.join(ROOT, f)) && ignoredByGit(f) === false);
  expect([...images, ...shown].filter((f) => !inClone(f))).toEqual([]);
});

function ignoredByGit(f: string): boolean {
  try {
    execFileSync('git', ['check-ignore', '-q', f], { cwd: ROOT });
    return true;
  } catch {
    return false;
  }
}

test('the edit example input is edit 2 of `synth --seed 1` at 64 px', async () => {
  expect(README).toContain('--image docs/images/edit-source.png --prompt "use a pink background"');
  const png = await renderScene(makeEditSample('1', 2).source, 64);
  expect(Buffer.compare(fs.readFileSync(path.join(ROOT, 'docs/images/edit-source.png')), png)).toBe(0);
  // A white background, so "use a pink background" is a real edit.
  expect(makeEditSample('1', 2).source.background).toBe('white');
});
