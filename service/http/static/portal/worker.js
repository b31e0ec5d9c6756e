// Hashes one photo's share of the listing variants off the page's thread. The photo
// arrives decoded (an ImageBitmap, EXIF orientation applied as the CLI applies it) and
// never leaves the device: only hashes go back to the page.

import { DEFAULT_SIGNALS, variantHashes } from "../hashing/variants.js";

// With two workers: PDQ of the photo and its crops in one; pHash and PDQ's fixed sizes
// (a resize of every pixel, three channels) in the other, about even.
const SHARES = {
  1: [() => true],
  2: [(signal, row) => signal === "pdq" && row.take !== "square", (signal, row) => !(signal === "pdq" && row.take !== "square")],
};

self.onmessage = ({ data: { id, bitmap, part, parts } }) => {
  try {
    const { width, height } = bitmap;
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    const image = context.getImageData(0, 0, width, height, { colorSpace: "srgb" });
    const variants = variantHashes(image, DEFAULT_SIGNALS, SHARES[parts][part]);
    self.postMessage({ id, variants });
  } catch (error) {
    self.postMessage({ id, error: String(error) });
  }
};
