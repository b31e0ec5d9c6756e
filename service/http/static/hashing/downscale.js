// The one small copy of a photo its variants are derived from, as hashmatch.downscale
// makes it: at most 512 pixels a side, by Pillow's reduce() when the factor divides both
// sides, otherwise by a symmetric tent resample of the grey image (and Pillow's BOX
// resize for the colour copy). Every step as the CLI takes it, so the page lists what the
// CLI lists.

import { pillowGrey } from "./luma.js";
import { BOX, resizeLanczos } from "./resample.js";

export const MAX_SIDE = 512;

/** Python's round(): halves go to the even neighbour. */
export function pyRound(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Pillow's Image.reduce(factor) of RGB(A) pixels: each factor x factor block's rounded
 * mean, in its fixed point (a multiplier computed in float, then >> 24). */
function reduce(image, factor) {
  const { width, height, data, channels = 4 } = image;
  const w = Math.trunc(width / factor);
  const h = Math.trunc(height / factor);
  const n = factor * factor;
  const multiplier = Math.trunc(Math.fround(2 ** 32 / Math.fround(256 * n)));
  const amend = Math.trunc(n / 2);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let ss = amend;
        for (let yy = y * factor; yy < (y + 1) * factor; yy++) {
          for (let xx = x * factor, p = (yy * width + xx) * channels + c; xx < (x + 1) * factor; xx++, p += channels) ss += data[p];
        }
        out[(y * w + x) * 3 + c] = Math.floor((ss * multiplier) / 2 ** 24);
      }
    }
  }
  return { width: w, height: h, data: out, channels: 3 };
}

// numpy's sum of a short float64 row along its contiguous axis: the first element, then
// pairwise summation of the rest (eight accumulators from 8 elements on).
function numpySum(values) {
  const rest = values.subarray(1);
  const pairwise = (a) => {
    if (a.length < 8) {
      let r = -0;
      for (const v of a) r += v;
      return r;
    }
    if (a.length <= 128) {
      const r = Array.from(a.subarray(0, 8));
      let i = 8;
      for (; i < a.length - (a.length % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[i + j];
      let res = r[0] + r[1] + (r[2] + r[3]) + (r[4] + r[5] + (r[6] + r[7]));
      for (; i < a.length; i++) res += a[i];
      return res;
    }
    let n2 = Math.trunc(a.length / 2);
    n2 -= n2 % 8;
    return pairwise(a.subarray(0, n2)) + pairwise(a.subarray(n2));
  };
  return values[0] + pairwise(rest);
}

const tapCache = new Map();

/** hashmatch.downscale._taps: for each of `size` outputs, the inputs (of n) within one
 * output pixel of its centre, weighted by a tent; the second half mirrors the first. */
export function taps(n, size) {
  const key = `${n}:${size}`;
  if (tapCache.has(key)) return tapCache.get(key);
  const scale = n / size;
  const half = Math.max(1, scale);
  const k = Math.trunc(2 * half) + 3;
  const inputs = new Int32Array(size * k);
  const weights = new Float64Array(size * k);
  for (let i = 0; i < size; i++) {
    const centre = (i + 0.5) * scale;
    const base = Math.floor(centre - half);
    for (let j = 0; j < k; j++) {
      const input = base + j;
      inputs[i * k + j] = input;
      const w = Math.max(1 - Math.abs(input + 0.5 - centre) / half, 0);
      weights[i * k + j] = input < 0 || input >= n ? 0 : w;
    }
    const total = numpySum(weights.subarray(i * k, (i + 1) * k));
    for (let j = 0; j < k; j++) weights[i * k + j] /= total;
  }
  const firstSecond = Math.trunc((size + 1) / 2);
  for (let i = firstSecond; i < size; i++) {
    const m = size - 1 - i;
    for (let j = 0; j < k; j++) {
      inputs[i * k + j] = n - 1 - inputs[m * k + (k - 1 - j)];
      weights[i * k + j] = weights[m * k + (k - 1 - j)];
    }
  }
  for (let i = 0; i < inputs.length; i++) inputs[i] = Math.min(Math.max(inputs[i], 0), n - 1);
  const result = { k, inputs, weights: Float32Array.from(weights) };
  tapCache.set(key, result);
  return result;
}

/**
 * hashmatch.downscale.resample: a window of a grey plane resampled to height x width
 * with the tent taps, in float32, rows then columns, one tap at a time.
 * @param {Float32Array|Uint8Array} plane row-major grey levels
 * @param {number} stride the plane's width
 * @param {{x: number, y: number, w: number, h: number}} box the window
 */
export function tentResample(plane, stride, box, height, width) {
  const { x: x0, y: y0, w, h } = box;
  const rows = taps(h, height);
  const tall = new Float32Array(height * w);
  for (let t = 0; t < rows.k; t++) {
    for (let i = 0; i < height; i++) {
      const weight = rows.weights[i * rows.k + t];
      const src = (y0 + rows.inputs[i * rows.k + t]) * stride + x0;
      const dst = i * w;
      for (let x = 0; x < w; x++) tall[dst + x] += Math.fround(weight * plane[src + x]);
    }
  }
  const cols = taps(w, width);
  const out = new Float32Array(height * width);
  for (let t = 0; t < cols.k; t++) {
    for (let i = 0; i < height; i++) {
      for (let j = 0; j < width; j++) {
        out[i * width + j] += Math.fround(cols.weights[j * cols.k + t] * tall[i * w + cols.inputs[j * cols.k + t]]);
      }
    }
  }
  return out;
}

/**
 * The downscale of a photo: its colour copy (packed RGB or the photo itself), that
 * copy's grey plane (for imagehash's signals) and the float luma the square variants
 * and border trimming read.
 * @param {{width: number, height: number, data: ArrayLike<number>, channels?: number}} image
 */
export function downscale(image) {
  const { width, height } = image;
  const factor = Math.ceil(Math.max(width, height) / MAX_SIDE);
  if (factor === 1) {
    const grey = pillowGrey(image);
    return { rgb: image, grey, luma: Float32Array.from(grey), width, height };
  }
  if (width % factor === 0 && height % factor === 0) {
    const rgb = reduce(image, factor);
    const grey = pillowGrey(rgb);
    return { rgb, grey, luma: Float32Array.from(grey), width: rgb.width, height: rgb.height };
  }
  const w = Math.max(1, pyRound(width / factor));
  const h = Math.max(1, pyRound(height / factor));
  const full = { x: 0, y: 0, w: width, h: height };
  const luma = tentResample(pillowGrey(image), width, full, h, w);
  const data = resizeLanczos(image.data, width, image.channels ?? 4, 3, full, w, h, BOX);
  const rgb = { width: w, height: h, data, channels: 3 };
  return { rgb, grey: pillowGrey(rgb), luma, width: w, height: h };
}
