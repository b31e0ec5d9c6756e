// Hashes one photo's share of the listing variants off the page's thread. The photo
// arrives decoded (an ImageBitmap, EXIF orientation applied as the CLI applies it) and
// never leaves the device: only hashes go back to the page.

import { DEFAULT_SIGNALS, shares, variantHashes } from "../hashing/variants.js";

self.onmessage = ({ data: { id, bitmap, part, parts } }) => {
  try {
    const { width, height } = bitmap;
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    const image = context.getImageData(0, 0, width, height, { colorSpace: "srgb" });
    const variants = variantHashes(image, DEFAULT_SIGNALS, shares(parts)[part]);
    self.postMessage({ id, variants });
  } catch (error) {
    self.postMessage({ id, error: String(error) });
  }
};
