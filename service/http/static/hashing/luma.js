// Grey levels from decoded pixels, once per photo: every crop is a window into them.
//
// Pixels come as the browser gives them (ImageData: RGBA, 8 bits, row-major) or as RGB
// (`channels: 3`, a resized copy); alpha is ignored, as the CLI drops it when it decodes
// to RGB.

/**
 * PDQ's luma, as the `pdqhash` package the CLI calls computes it: the 0.299/0.587/0.114
 * weighting in double precision, rounded once to float32 (Meta's C++ works in float).
 * @param {{width: number, height: number, data: ArrayLike<number>, channels?: number}} image
 * @returns {Float32Array} width*height lumas, row-major
 */
export function pdqLuma(image) {
  const { width, height, data, channels = 4 } = image;
  const out = new Float32Array(width * height);
  for (let i = 0, p = 0; i < out.length; i++, p += channels) {
    out[i] = data[p] * 0.299 + data[p + 1] * 0.587 + data[p + 2] * 0.114;
  }
  return out;
}

/**
 * Pillow's `convert("L")` from RGB (ITU-R 601-2 luma in 16-bit fixed point, rounded):
 * the grey image imagehash and the CLI's border trimming start from.
 * @param {{width: number, height: number, data: ArrayLike<number>, channels?: number}} image
 * @returns {Uint8Array} width*height grey levels, row-major
 */
export function pillowGrey(image) {
  const { width, height, data, channels = 4 } = image;
  const out = new Uint8Array(width * height);
  for (let i = 0, p = 0; i < out.length; i++, p += channels) {
    out[i] = (data[p] * 19595 + data[p + 1] * 38470 + data[p + 2] * 7471 + 0x8000) >>> 16;
  }
  return out;
}
