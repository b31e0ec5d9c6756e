// PDQ, Meta's 256-bit perceptual hash, from the published algorithm (facebook/
// ThreatExchange pdq/cpp) as the `pdqhash` package the CLI calls runs it: float luma,
// two passes of a Jarosz box filter sized to the image, 64x64 decimation, a 16x16 DCT
// and a median threshold, with the gradient quality score.
//
// Arithmetic is float32 in the C++'s order, so a photo hashes to the CLI's bits. Work
// the result never reads is skipped: the last two box passes run only where the 64x64
// decimation samples, and the first pass along rows is shared by every window spanning
// the photo's full width (the photo, its top/bottom crops and band cuts).

const f32 = Math.fround;
const MIN_HASHABLE_DIM = 5;
const DOWNSAMPLE = 64;

/** Box-filter window: about twice the input's size over 64, so 64 samples cover it. */
export function jaroszWindow(dim) {
  return Math.trunc((dim + 2 * DOWNSAMPLE - 1) / (2 * DOWNSAMPLE));
}

// Meta's box1DFloat is a running mean whose window grows in from one edge and shrinks out
// at the other, in four phases; these are its loop counts.
function phases(length, window) {
  const half = Math.trunc((window + 2) / 2);
  return [half - 1, window - half + 1, length - window, half - 1];
}

// Each row's running sum is a chain of dependent float32 additions; four rows at once give
// the processor four independent chains. The sums and their order are Meta's, row by row.

/** The box filter along each of `rows` rows of `cols` samples: input row r starts at
 * inStart + r * inStride, output row r at r * cols. With `at` (ascending column indices,
 * may repeat), only the outputs at those columns are kept, at.length a row. */
function boxRows(input, inStart, inStride, output, rows, cols, window, at = null) {
  const [p1, p2, p3, p4] = phases(cols, window);
  const n = at === null ? cols : at.length;
  // Where each output position goes: every one, or the sampled ones (-1: dropped; a
  // position sampled twice is copied after the pass).
  const slot = new Int32Array(cols).fill(-1);
  if (at === null) for (let c = 0; c < cols; c++) slot[c] = c;
  else for (let k = n - 1; k >= 0; k--) slot[at[k]] = k;
  const divisor = new Float64Array(cols); // the window's size at each output position
  for (let o = 0, size = p1; o < cols; o++) {
    if (o < p2) size++;
    else if (o >= p2 + p3) size--;
    divisor[o] = size;
  }
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const a0 = inStart + r * inStride;
    const a1 = a0 + inStride;
    const a2 = a1 + inStride;
    const a3 = a2 + inStride;
    const o0 = r * n;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let ri = 0;
    let li = 0;
    let o = 0;
    for (; ri < p1; ri++) {
      s0 = f32(s0 + input[a0 + ri]);
      s1 = f32(s1 + input[a1 + ri]);
      s2 = f32(s2 + input[a2 + ri]);
      s3 = f32(s3 + input[a3 + ri]);
    }
    for (; o < p2 + p3 + p4; o++) {
      if (o < p2) {
        s0 = f32(s0 + input[a0 + ri]);
        s1 = f32(s1 + input[a1 + ri]);
        s2 = f32(s2 + input[a2 + ri]);
        s3 = f32(s3 + input[a3 + ri]);
        ri++;
      } else if (o < p2 + p3) {
        s0 = f32(f32(s0 + input[a0 + ri]) - input[a0 + li]);
        s1 = f32(f32(s1 + input[a1 + ri]) - input[a1 + li]);
        s2 = f32(f32(s2 + input[a2 + ri]) - input[a2 + li]);
        s3 = f32(f32(s3 + input[a3 + ri]) - input[a3 + li]);
        ri++;
        li++;
      } else {
        s0 = f32(s0 - input[a0 + li]);
        s1 = f32(s1 - input[a1 + li]);
        s2 = f32(s2 - input[a2 + li]);
        s3 = f32(s3 - input[a3 + li]);
        li++;
      }
      const k = slot[o];
      if (k >= 0) {
        const d = divisor[o];
        output[o0 + k] = s0 / d;
        output[o0 + n + k] = s1 / d;
        output[o0 + 2 * n + k] = s2 / d;
        output[o0 + 3 * n + k] = s3 / d;
      }
    }
  }
  for (; r < rows; r++) {
    const a = inStart + r * inStride;
    const out = r * n;
    let sum = 0;
    let ri = 0;
    let li = 0;
    for (; ri < p1; ri++) sum = f32(sum + input[a + ri]);
    for (let o = 0; o < p2 + p3 + p4; o++) {
      if (o < p2) sum = f32(sum + input[a + ri++]);
      else if (o < p2 + p3) sum = f32(f32(sum + input[a + ri++]) - input[a + li++]);
      else sum = f32(sum - input[a + li++]);
      const k = slot[o];
      if (k >= 0) output[out + k] = sum / divisor[o];
    }
  }
  if (at !== null) {
    // Repeated samples (inputs narrower than 64): copy the first of each run.
    for (let k = 1; k < n; k++) {
      if (at[k] === at[k - 1]) for (let row = 0; row < rows; row++) output[row * n + k] = output[row * n + k - 1];
    }
  }
}

/** The box filter down each of `cols` columns, all columns a row at a time (the same sums
 * as column by column, in cache order): input row r starts at inStart + r * inStride,
 * output row r at r * cols. */
function boxCols(input, inStart, inStride, output, rows, cols, window) {
  const [p1, p2, p3, p4] = phases(rows, window);
  const sums = new Float32Array(cols);
  let ri = inStart;
  let li = inStart;
  let oi = 0;
  let size = 0;
  for (let i = 0; i < p1; i++, ri += inStride) {
    for (let c = 0; c < cols; c++) sums[c] += input[ri + c];
    size++;
  }
  for (let i = 0; i < p2; i++, ri += inStride, oi += cols) {
    size++;
    for (let c = 0; c < cols; c++) {
      sums[c] += input[ri + c];
      output[oi + c] = sums[c] / size;
    }
  }
  for (let i = 0; i < p3; i++, ri += inStride, li += inStride, oi += cols) {
    for (let c = 0; c < cols; c++) {
      sums[c] = f32(sums[c] + input[ri + c]) - input[li + c];
      output[oi + c] = sums[c] / size;
    }
  }
  for (let i = 0; i < p4; i++, li += inStride, oi += cols) {
    size--;
    for (let c = 0; c < cols; c++) {
      sums[c] -= input[li + c];
      output[oi + c] = sums[c] / size;
    }
  }
}

/** Where 64x64 decimation samples an axis of `dim` samples. */
function decimation(dim) {
  const at = new Int32Array(DOWNSAMPLE);
  for (let i = 0; i < DOWNSAMPLE; i++) at[i] = Math.trunc(((i + 0.5) * dim) / DOWNSAMPLE);
  return at;
}

// 16x64: the DCT-II basis rows 1..16 (the DC row carries no structure and is skipped).
const DCT = (() => {
  const m = new Float32Array(16 * 64);
  const scale = f32(Math.sqrt(2 / 64)); // a float in the C++
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) m[i * 64 + j] = scale * Math.cos((Math.PI / 2 / 64) * (i + 1) * (2 * j + 1));
  }
  return m;
})();

/** Sum of |int((a - b) * 100 / 255)| over neighbours, / 90, capped at 100. */
function quality(b64) {
  let sum = 0;
  const step = (a, b) => Math.abs(Math.trunc(f32(f32(f32(a - b) * 100) / 255)));
  for (let i = 0; i < 63; i++) {
    for (let j = 0; j < 64; j++) sum += step(b64[i * 64 + j], b64[(i + 1) * 64 + j]);
  }
  for (let i = 0; i < 64; i++) {
    for (let j = 0; j < 63; j++) sum += step(b64[i * 64 + j], b64[i * 64 + j + 1]);
  }
  return Math.min(Math.trunc(sum / 90), 100);
}

function dct16(b64) {
  const t = new Float32Array(16 * 64);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      let s = 0;
      for (let k = 0; k < 64; k++) s = f32(s + f32(DCT[i * 64 + k] * b64[k * 64 + j]));
      t[i * 64 + j] = s;
    }
  }
  const out = new Float32Array(256);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let s = 0;
      for (let k = 0; k < 64; k++) s = f32(s + f32(t[i * 64 + k] * DCT[j * 64 + k]));
      out[i * 16 + j] = s;
    }
  }
  return out;
}

/** Bit i*16+j is set when coefficient (i, j) is above the median (the 128th smallest);
 * the hex runs from bit 255 down to bit 0, as Meta's and the CLI's do. */
function toHex(coeffs) {
  const median = Float32Array.from(coeffs).sort()[127];
  let hex = "";
  for (let nibble = 63; nibble >= 0; nibble--) {
    let v = 0;
    for (let b = 3; b >= 0; b--) v = (v << 1) | (coeffs[nibble * 4 + b] > median ? 1 : 0);
    hex += v.toString(16);
  }
  return hex;
}

/**
 * A PDQ hasher for windows of one photo's luma plane (pdqLuma): hash(box) is PDQ of that
 * crop, as the CLI computes it.
 * @param {Float32Array} luma the whole photo's luma, row-major
 * @param {number} width the photo's width
 * @param {number} height the photo's height
 */
export function pdqHasher(luma, width, height) {
  let fullRows = null; // first pass along rows of the whole photo, shared by full-width boxes
  let scratch = null; // two photo-sized buffers, reused by every window
  const buffer = (i, length) => {
    scratch ??= [new Float32Array(width * height), new Float32Array(width * height)];
    return scratch[i].subarray(0, length);
  };
  /**
   * @param {{x: number, y: number, w: number, h: number}} box the window to hash
   * @returns {{hash: string, quality: number}} 64 hex digits and PDQ's quality (0-100)
   */
  return function hash({ x, y, w: cols, h: rows }) {
    if (rows < MIN_HASHABLE_DIM || cols < MIN_HASHABLE_DIM) return { hash: "0".repeat(64), quality: 0 };
    const alongRows = jaroszWindow(cols);
    const alongCols = jaroszWindow(rows);
    let first;
    let start;
    if (x === 0 && cols === width) {
      if (fullRows === null) {
        fullRows = new Float32Array(width * height);
        boxRows(luma, 0, width, fullRows, height, width, alongRows);
      }
      first = fullRows;
      start = y * width;
    } else {
      first = buffer(0, rows * cols);
      boxRows(luma, y * width + x, width, first, rows, cols, alongRows);
      start = 0;
    }
    const second = buffer(1, rows * cols);
    boxCols(first, start, cols, second, rows, cols, alongCols);
    const atCols = decimation(cols);
    const third = new Float32Array(rows * DOWNSAMPLE);
    boxRows(second, 0, cols, third, rows, cols, alongRows, atCols);
    const fourth = new Float32Array(rows * DOWNSAMPLE);
    boxCols(third, 0, DOWNSAMPLE, fourth, rows, DOWNSAMPLE, alongCols);
    const atRows = decimation(rows);
    const b64 = new Float32Array(DOWNSAMPLE * DOWNSAMPLE);
    for (let i = 0; i < DOWNSAMPLE; i++) b64.set(fourth.subarray(atRows[i] * DOWNSAMPLE, (atRows[i] + 1) * DOWNSAMPLE), i * DOWNSAMPLE);
    return { hash: toHex(dct16(b64)), quality: quality(b64) };
  };
}

/** PDQ of one window of a luma plane (see pdqHasher). */
export function pdqFromLuma(luma, width, box) {
  return pdqHasher(luma, width, box.y + box.h)(box);
}

// hashmatch.signals.pdq.PdqSignal.hash_square: PDQ's steps after its blur and decimation,
// on a 64x64 luminance square, in float64, coefficients rounded to 0.01 (so rounding
// noise on a symmetric picture sets no bits) and set against their median.
const SQUARE_DCT = (() => {
  const m = new Float64Array(16 * 64);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) m[i * 64 + j] = Math.sqrt(2 / 64) * Math.cos((Math.PI / 128) * (i + 1) * (2 * j + 1));
  }
  return m;
})();
const PRECISION = 0.01;

function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * PDQ of a 64x64 float32 luminance square (a variant of the downscale).
 * @param {Float32Array} square 64*64 grey levels, row-major
 * @returns {{hash: string, quality: number}}
 */
export function pdqFromSquare(square) {
  const t = new Float64Array(16 * 64);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      let s = 0;
      for (let k = 0; k < 64; k++) s += SQUARE_DCT[i * 64 + k] * square[k * 64 + j];
      t[i * 64 + j] = s;
    }
  }
  const coeffs = new Float64Array(256);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let s = 0;
      for (let k = 0; k < 64; k++) s += t[i * 64 + k] * SQUARE_DCT[j * 64 + k];
      coeffs[i * 16 + j] = roundHalfEven(s / PRECISION);
    }
  }
  const sorted = Float64Array.from(coeffs).sort();
  const median = (sorted[127] + sorted[128]) / 2;
  let hex = "";
  for (let nibble = 63; nibble >= 0; nibble--) {
    let v = 0;
    for (let b = 3; b >= 0; b--) v = (v << 1) | (coeffs[nibble * 4 + b] > median ? 1 : 0);
    hex += v.toString(16);
  }
  const q = f32(100 / 255);
  let gradients = 0;
  for (const [di, dj] of [[1, 0], [0, 1]]) {
    let sum = 0;
    for (let i = 0; i + di < 64; i++) {
      for (let j = 0; j + dj < 64; j++) {
        sum += Math.floor(f32(Math.abs(f32(square[(i + di) * 64 + j + dj] - square[i * 64 + j])) * q));
      }
    }
    gradients += sum;
  }
  return { hash: hex, quality: Math.min(100, Math.trunc(gradients / 90)) };
}
