// pHash as imagehash.phash computes it for the CLI: Pillow's grey image resized to 32x32
// with LANCZOS, a 2-D DCT-II, and the top-left 8x8 coefficients set against their median.

import { resizeCols, resizeRows } from "./resample.js";

const SIZE = 32;
const HASH = 8;

// cos(pi * k * (2n + 1) / 64) for the 8 low frequencies k; scipy's unnormalised DCT-II
// doubles it, which no comparison with the median can see, so it is left out.
const BASIS = (() => {
  const m = new Float64Array(HASH * SIZE);
  for (let k = 0; k < HASH; k++) {
    for (let n = 0; n < SIZE; n++) m[k * SIZE + n] = Math.cos((Math.PI * k * (2 * n + 1)) / (2 * SIZE));
  }
  return m;
})();

function hashOf(small) {
  // Along columns first (scipy's axis 0), then along rows, low frequencies only.
  const cols = new Float64Array(HASH * SIZE);
  for (let k = 0; k < HASH; k++) {
    for (let m = 0; m < SIZE; m++) {
      let s = 0;
      for (let n = 0; n < SIZE; n++) s += small[n * SIZE + m] * BASIS[k * SIZE + n];
      cols[k * SIZE + m] = s;
    }
  }
  const low = new Float64Array(HASH * HASH);
  let scale = 0;
  for (let k = 0; k < HASH; k++) {
    for (let l = 0; l < HASH; l++) {
      let s = 0;
      for (let m = 0; m < SIZE; m++) s += cols[k * SIZE + m] * BASIS[l * SIZE + m];
      low[k * HASH + l] = s;
      scale = Math.max(scale, Math.abs(s));
    }
  }
  // A coefficient that is zero but for rounding is zero: scipy's FFT gets exact zeros on
  // symmetric images (a chessboard has 47 of 64), and which of them is noise above the
  // median would otherwise decide the bits.
  for (let i = 0; i < low.length; i++) if (Math.abs(low[i]) <= scale * 1e-12) low[i] = 0;
  const sorted = Float64Array.from(low).sort();
  const median = (sorted[31] + sorted[32]) / 2;
  let hex = "";
  for (let nibble = 0; nibble < 16; nibble++) {
    let v = 0;
    for (let b = 0; b < 4; b++) v = (v << 1) | (low[nibble * 4 + b] > median ? 1 : 0);
    hex += v.toString(16);
  }
  return hex;
}

/**
 * A pHash hasher for windows of one photo's grey plane (pillowGrey): hash(box) is the
 * CLI's pHash of that crop. Boxes spanning the full width share one horizontal pass.
 * @param {Uint8Array} grey the whole photo's grey levels, row-major
 * @param {number} width the photo's width
 * @param {number} height the photo's height
 */
export function phashHasher(grey, width, height) {
  let fullRows = null;
  /** @returns {{hash: string}} 16 hex digits, row-major, most significant bit first */
  return function hash(box) {
    let small;
    if (box.x === 0 && box.w === width) {
      fullRows ??= resizeRows(grey, width, 1, 1, { x: 0, y: 0, w: width, h: height }, SIZE);
      small = resizeCols(fullRows, SIZE, box.y, box.h, SIZE);
    } else {
      small = resizeCols(resizeRows(grey, width, 1, 1, box, SIZE), SIZE, 0, box.h, SIZE);
    }
    return { hash: hashOf(small) };
  };
}

/** pHash of one window of a grey plane (see phashHasher). */
export function phashFromGrey(grey, width, box) {
  return phashHasher(grey, width, box.y + box.h)(box);
}
