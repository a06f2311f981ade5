import { classMeanCodebook, patchCodes, PatchDictionary } from '../src/shapeworld/patch_codes';

/** Images of side 4 tiled by 2x2 patches; `tiles[i]` lists each patch's grey level (0-255), raster order. */
function images(tiles: number[][]): Float32Array {
  const size = 4;
  const out = new Float32Array(tiles.length * size * size * 3);
  tiles.forEach((t, i) => {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const level = t[Math.floor(y / 2) * 2 + Math.floor(x / 2)];
        for (let c = 0; c < 3; c++) out[((i * size + y) * size + x) * 3 + c] = level / 127.5 - 1;
      }
    }
  });
  return out;
}

test('one code per distinct patch, numbered in order of first appearance', () => {
  const dict: PatchDictionary = { patch: 2, codes: new Map() };
  const codes = patchCodes(dict, images([[0, 0, 200, 0], [200, 7, 7, 0]]), 2, 4, true);
  expect([...codes]).toEqual([0, 0, 1, 0, 1, 2, 2, 0]);
  expect(dict.codes.size).toBe(3);
  // Without growing, patches the dictionary has not seen are -1 and the dictionary is unchanged.
  expect([...patchCodes(dict, images([[7, 99, 0, 200]]), 1, 4, false)]).toEqual([2, -1, 0, 1]);
  expect(dict.codes.size).toBe(3);
});

test('patches differing in one pixel get different codes', () => {
  const dict: PatchDictionary = { patch: 2, codes: new Map() };
  const px = images([[10, 10, 10, 10]]);
  px[0] = 11 / 127.5 - 1; // top-left pixel, red channel
  expect([...patchCodes(dict, px, 1, 4, true)]).toEqual([0, 1, 1, 1]);
});

test('more distinct patches than the codebook holds is an error that says what to do', () => {
  const dict: PatchDictionary = { patch: 2, codes: new Map() };
  expect(() => patchCodes(dict, images([[1, 2, 3, 4]]), 1, 4, true, 3)).toThrow(/more than 3 distinct 2x2 patches \(image 0\); raise the codebook size/);
  expect(() => patchCodes(dict, images([[1]]).subarray(0, 5), 1, 4, true)).toThrow(/expected 1 x 4 x 4 x 3 values/);
});

test('class-mean codebook: each used code gets the unit mean of its latents, unused codes keep their row', () => {
  const table = Float32Array.from([9, 9, 8, 8, 7, 7]); // three codes of dim 2
  const latents = Float32Array.from([1, 0, 0, 1, 0, -1, 0, -1]);
  const out = classMeanCodebook(table, latents, Int32Array.from([0, 0, 2, 2]), 2);
  expect(Array.from(out.slice(0, 2)).map((v) => v.toFixed(4))).toEqual(['0.7071', '0.7071']);
  expect(Array.from(out.slice(2, 4))).toEqual([8, 8]);
  expect(Array.from(out.slice(4, 6))).toEqual([0, -1]);
  expect(Array.from(table)).toEqual([9, 9, 8, 8, 7, 7]);
  expect(() => classMeanCodebook(table, latents, Int32Array.from([0]), 2)).toThrow(/4 latents for 1 codes/);
});
