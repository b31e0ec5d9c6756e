// Pillow's resize of 8-bit images (Image.resize), LANCZOS for the CLI's pHash (through
// imagehash) and BOX for the colour copy of its downscale (hashmatch.downscale).
//
// Pillow resizes in two separable passes, horizontal first, each output sample a window
// of inputs weighted by a Lanczos-3 kernel stretched by the downscale factor (so a
// downscale averages every input it covers). Weights are normalised per output, turned
// into 22-bit fixed point, and each pass rounds and clamps to 0..255. The same steps,
// in the same order, make the same bytes.

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 2 ** PRECISION_BITS;
const LANCZOS_SUPPORT = 3;

function sinc(x) {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function lanczos(x) {
  return -LANCZOS_SUPPORT <= x && x < LANCZOS_SUPPORT ? sinc(x) * sinc(x / 3) : 0;
}

/** Pillow's filters: the kernel and its support at scale 1. */
export const LANCZOS = { kernel: lanczos, support: LANCZOS_SUPPORT };
export const BOX = { kernel: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0), support: 0.5 };

/**
 * Per output sample: the first input it reads, how many, and their fixed-point weights.
 * @param {number} inSize inputs available
 * @param {number} outSize outputs wanted
 */
export function coefficients(inSize, outSize, filter = LANCZOS) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const weights = new Int32Array(outSize * ksize);
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const pre = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.kernel((x + xmin - center + 0.5) * ss);
      pre[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? pre[x] / ww : pre[x];
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, weights, first, count };
}

function clip8(sum) {
  const v = sum >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// One grey plane's horizontal pass, four rows at a time (four independent sums per
// weight: the processor overlaps them). Integer arithmetic, as Pillow's: sums stay below
// 2^31 (weights total 2^22, their positive part under 1.2 * 2^22, samples under 256).
function planeRows(plane, width, x0, y0, w, h, outW, mid, filter) {
  const { ksize, weights, first, count } = coefficients(w, outW, filter);
  let y = 0;
  for (; y + 4 <= h; y += 4) {
    const r0 = (y0 + y) * width + x0;
    const r1 = r0 + width;
    const r2 = r1 + width;
    const r3 = r2 + width;
    const o = y * outW;
    for (let xx = 0; xx < outW; xx++) {
      const k = xx * ksize;
      const f = first[xx];
      const n = count[xx];
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      let s3 = HALF;
      for (let i = 0; i < n; i++) {
        const wgt = weights[k + i];
        const j = f + i;
        s0 = (s0 + Math.imul(plane[r0 + j], wgt)) | 0;
        s1 = (s1 + Math.imul(plane[r1 + j], wgt)) | 0;
        s2 = (s2 + Math.imul(plane[r2 + j], wgt)) | 0;
        s3 = (s3 + Math.imul(plane[r3 + j], wgt)) | 0;
      }
      mid[o + xx] = clip8(s0);
      mid[o + outW + xx] = clip8(s1);
      mid[o + 2 * outW + xx] = clip8(s2);
      mid[o + 3 * outW + xx] = clip8(s3);
    }
  }
  for (; y < h; y++) {
    const r = (y0 + y) * width + x0;
    for (let xx = 0; xx < outW; xx++) {
      const k = xx * ksize;
      const f = first[xx];
      let s = HALF;
      for (let i = 0, n = count[xx]; i < n; i++) s = (s + Math.imul(plane[r + f + i], weights[k + i])) | 0;
      mid[y * outW + xx] = clip8(s);
    }
  }
}

/**
 * Pillow's horizontal pass: rows y0..y0+h of a window x0..x0+w resized to outW samples
 * across, `channels` leading samples per pixel, to a packed outW*h*channels result.
 * @param {ArrayLike<number>} pixels interleaved samples, row-major
 * @param {number} width full image width in pixels
 * @param {number} stride samples per pixel in `pixels` (4 for RGBA, 1 for grey)
 */
export function resizeRows(pixels, width, stride, channels, { x: x0, y: y0, w, h }, outW, filter = LANCZOS) {
  const mid = new Uint8Array(outW * h * channels);
  if (outW === w) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const src = ((y0 + y) * width + x0 + x) * stride;
        for (let c = 0; c < channels; c++) mid[(y * w + x) * channels + c] = pixels[src + c];
      }
    }
    return mid;
  }
  if (stride === 1) {
    planeRows(pixels, width, x0, y0, w, h, outW, mid, filter);
    return mid;
  }
  if (stride === 4 && channels === 3 && LITTLE_ENDIAN && pixels.byteOffset % 4 === 0) {
    rgbaRows(new Int32Array(pixels.buffer, pixels.byteOffset, pixels.length >> 2), width, x0, y0, w, h, outW, mid, filter);
    return mid;
  }
  // Other layouts: each channel's window as a plane of its own, resized, put back.
  const plane = new Uint8Array(w * h);
  const out = new Uint8Array(outW * h);
  for (let c = 0; c < channels; c++) {
    for (let y = 0, i = 0; y < h; y++) {
      for (let x = 0, src = ((y0 + y) * width + x0) * stride + c; x < w; x++, src += stride) plane[i++] = pixels[src];
    }
    planeRows(plane, w, 0, 0, w, h, outW, out, filter);
    for (let i = 0; i < out.length; i++) mid[i * channels + c] = out[i];
  }
  return mid;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// RGBA pixels read a 32-bit word at a time (red in the low byte), to packed RGB.
function rgbaRows(words, width, x0, y0, w, h, outW, mid, filter) {
  const { ksize, weights, first, count } = coefficients(w, outW, filter);
  for (let y = 0; y < h; y++) {
    const row = (y0 + y) * width + x0;
    for (let xx = 0; xx < outW; xx++) {
      const k = xx * ksize;
      const n = count[xx];
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let i = 0, p = row + first[xx]; i < n; i++, p++) {
        const wgt = weights[k + i];
        const px = words[p];
        s0 = (s0 + Math.imul(px & 255, wgt)) | 0;
        s1 = (s1 + Math.imul((px >> 8) & 255, wgt)) | 0;
        s2 = (s2 + Math.imul((px >> 16) & 255, wgt)) | 0;
      }
      const d = (y * outW + xx) * 3;
      mid[d] = clip8(s0);
      mid[d + 1] = clip8(s1);
      mid[d + 2] = clip8(s2);
    }
  }
}

/**
 * Pillow's vertical pass over packed rows (resizeRows' output, rowLen samples a row):
 * rows y0..y0+h resized to outH rows.
 */
export function resizeCols(mid, rowLen, y0, h, outH, filter = LANCZOS) {
  if (outH === h) return mid.slice(y0 * rowLen, (y0 + h) * rowLen);
  const { ksize, weights, first, count } = coefficients(h, outH, filter);
  const out = new Uint8Array(rowLen * outH);
  for (let yy = 0; yy < outH; yy++) {
    const k = yy * ksize;
    const f = y0 + first[yy];
    const n = count[yy];
    for (let s = 0; s < rowLen; s++) {
      let sum = HALF;
      for (let i = 0, src = f * rowLen + s; i < n; i++, src += rowLen) sum = (sum + Math.imul(mid[src], weights[k + i])) | 0;
      out[yy * rowLen + s] = clip8(sum);
    }
  }
  return out;
}

/**
 * Resize a window of an interleaved 8-bit image as Pillow's LANCZOS does.
 * @param {ArrayLike<number>} pixels interleaved samples, row-major
 * @param {number} width full image width in pixels
 * @param {number} stride samples per pixel in `pixels` (4 for RGBA, 1 for grey)
 * @param {number} channels leading samples of each pixel to resize (3 for RGB of RGBA)
 * @param {{x: number, y: number, w: number, h: number}} box the window to resize
 * @param {number} outW output width
 * @param {number} outH output height
 * @returns {Uint8Array} outW*outH*channels samples
 */
export function resizeLanczos(pixels, width, stride, channels, box, outW, outH, filter = LANCZOS) {
  const mid = resizeRows(pixels, width, stride, channels, box, outW, filter);
  return resizeCols(mid, outW * channels, 0, box.h, outH, filter);
}
