// Properties of the page's hashing that hold for any pixels, on seeded random images:
// Meta's reference constants, Pillow's and Python's rounding, and that hashing a window
// of a photo (how the page hashes crops, sharing work between them) is hashing the crop.

import assert from "node:assert/strict";
import { test } from "node:test";

import { pdqLuma, pillowGrey } from "../../service/http/static/hashing/luma.js";
import { jaroszWindow, pdqFromLuma, pdqHasher } from "../../service/http/static/hashing/pdq.js";
import { phashHasher } from "../../service/http/static/hashing/phash.js";
import { coefficients, resizeLanczos } from "../../service/http/static/hashing/resample.js";
import { pyRound, trimBorders } from "../../service/http/static/hashing/variants.js";

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A random photo-like image: smooth blobs plus noise, so hashes carry structure. */
function randomImage(random, width, height) {
  const data = new Uint8Array(width * height * 4);
  const blobs = Array.from({ length: 6 }, () => [random() * width, random() * height, 5 + random() * width, random() * 255]);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let v = 0;
      for (const [bx, by, r, level] of blobs) v += level * Math.exp(-((x - bx) ** 2 + (y - by) ** 2) / (r * r));
      const p = (y * width + x) * 4;
      for (let c = 0; c < 3; c++) data[p + c] = Math.max(0, Math.min(255, Math.round(v / 2 + random() * 40 * (c + 1))));
      data[p + 3] = 255;
    }
  }
  return { width, height, data };
}

function crop(image, { x, y, w, h }) {
  const data = new Uint8Array(w * h * 4);
  for (let r = 0; r < h; r++) data.set(image.data.subarray(((y + r) * image.width + x) * 4, ((y + r) * image.width + x + w) * 4), r * w * 4);
  return { width: w, height: h, data };
}

const ones = (hex) => [...hex].reduce((n, c) => n + [...parseInt(c, 16).toString(2)].filter((b) => b === "1").length, 0);

test("Meta's constants: box window (dim + 127) / 128, images under 5 pixels hash to zero", () => {
  assert.deepEqual([1, 127, 128, 255, 256, 512, 1000, 4000].map(jaroszWindow), [1, 1, 1, 2, 2, 4, 8, 32]);
  const tiny = randomImage(rng(1), 4, 40);
  assert.deepEqual(pdqFromLuma(pdqLuma(tiny), 4, { x: 0, y: 0, w: 4, h: 40 }), { hash: "0".repeat(64), quality: 0 });
});

test("Pillow's grey and Python's round: fixed-point luma, halves to even", () => {
  const px = { width: 4, height: 1, data: new Uint8Array([255, 255, 255, 0, 255, 0, 0, 0, 0, 255, 0, 0, 0, 0, 255, 0]) };
  assert.deepEqual([...pillowGrey(px)], [255, 76, 150, 29]);
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, 2.4999, 2.5001, 25.6].map(pyRound), [0, 2, 2, 0, 2, 3, 26]);
});

test("Lanczos weights sum to one in 22-bit fixed point, within rounding", () => {
  for (const [from, to] of [[512, 32], [1000, 64], [33, 32], [7, 32], [4000, 128]]) {
    const { ksize, weights, count } = coefficients(from, to);
    for (let i = 0; i < to; i++) {
      let sum = 0;
      for (let k = 0; k < count[i]; k++) sum += weights[i * ksize + k];
      assert.ok(Math.abs(sum - 2 ** 22) <= ksize, `${from}->${to} output ${i}: ${sum}`);
    }
  }
  const flat = { width: 50, height: 30, data: new Uint8Array(50 * 30 * 4).fill(137) };
  assert.ok(resizeLanczos(flat.data, 50, 4, 3, { x: 0, y: 0, w: 50, h: 30 }, 32, 32).every((v) => v === 137));
});

test("a window of a photo hashes as the cropped photo does (PDQ and pHash)", () => {
  const random = rng(7);
  for (let trial = 0; trial < 12; trial++) {
    const width = 20 + Math.floor(random() * 300);
    const height = 20 + Math.floor(random() * 300);
    const image = randomImage(random, width, height);
    const pdq = pdqHasher(pdqLuma(image), width, height);
    const phash = phashHasher(pillowGrey(image), width, height);
    for (let k = 0; k < 4; k++) {
      const full = k % 2 === 0; // full-width windows take the shared path
      const x = full ? 0 : Math.floor(random() * width * 0.4);
      const w = full ? width : Math.max(5, Math.floor((width - x) * (0.5 + random() * 0.5)));
      const y = Math.floor(random() * height * 0.4);
      const h = Math.max(5, Math.floor((height - y) * (0.5 + random() * 0.5)));
      const box = { x, y, w, h };
      const alone = crop(image, box);
      const whole = { x: 0, y: 0, w, h };
      assert.deepEqual(pdq(box), pdqHasher(pdqLuma(alone), w, h)(whole), JSON.stringify(box));
      assert.deepEqual(phash(box), phashHasher(pillowGrey(alone), w, h)(whole), JSON.stringify(box));
    }
  }
});

test("median thresholds: PDQ sets 128 of 256 bits and pHash 32 of 64 on detailed images", () => {
  const random = rng(11);
  for (let trial = 0; trial < 8; trial++) {
    const image = randomImage(random, 64 + Math.floor(random() * 200), 64 + Math.floor(random() * 200));
    const box = { x: 0, y: 0, w: image.width, h: image.height };
    assert.equal(ones(pdqHasher(pdqLuma(image), image.width, image.height)(box).hash), 128);
    assert.equal(ones(phashHasher(pillowGrey(image), image.width, image.height)(box).hash), 32);
  }
});

test("border trimming finds a letterbox and leaves a borderless image alone", () => {
  const random = rng(3);
  const inner = randomImage(random, 120, 60);
  const framed = { width: 120, height: 100, data: new Uint8Array(120 * 100 * 4).fill(0) };
  framed.data.set(inner.data, 20 * 120 * 4);
  assert.deepEqual(trimBorders(pillowGrey(framed), 120, 100), { x: 0, y: 20, w: 120, h: 60 });
  assert.equal(trimBorders(pillowGrey(inner), 120, 60), null);
});

test("a photo's variants shared between 1 to 4 workers merge into the whole list", async () => {
  const { listingVariants, mergeVariants, shares, variantHashes } = await import("../../service/http/static/hashing/variants.js");
  const random = rng(5);
  const inner = randomImage(random, 160, 90);
  const framed = { width: 160, height: 130, data: new Uint8Array(160 * 130 * 4).fill(255) };
  framed.data.set(inner.data, 20 * 160 * 4);
  for (const image of [framed, randomImage(random, 97, 143)]) {
    const whole = listingVariants(image);
    for (let parts = 1; parts <= 4; parts++) {
      const split = shares(parts).map((wanted) => variantHashes(image, undefined, wanted));
      assert.deepEqual(mergeVariants(...split), whole, `${parts} parts`);
    }
    assert.ok(whole.some((v) => v.name === "trimmed") === (image === framed));
  }
});

/** The pixels turned as Pillow's Image.transpose does, written out turn by turn (not
 * through the page's table): ROTATE_90 is counter-clockwise, TRANSVERSE the transpose
 * about the other diagonal. */
function transpose(image, name) {
  const { width: w, height: h } = image;
  const swaps = ["rot90", "rot270", "transpose", "transverse"].includes(name);
  const [W, H] = swaps ? [h, w] : [w, h];
  const source = {
    rot90: (x, y) => [w - 1 - y, x],
    rot180: (x, y) => [w - 1 - x, h - 1 - y],
    rot270: (x, y) => [y, h - 1 - x],
    flip: (x, y) => [x, h - 1 - y],
    mirror: (x, y) => [w - 1 - x, y],
    transpose: (x, y) => [y, x],
    transverse: (x, y) => [w - 1 - y, h - 1 - x],
  }[name];
  const data = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const [sx, sy] = source(x, y);
      data.set(image.data.subarray((sy * w + sx) * 4, (sy * w + sx) * 4 + 4), (y * W + x) * 4);
    }
  }
  return { width: W, height: H, data };
}

test("each listed turned square is the square of the photo turned that way", async () => {
  const { ORIENTATIONS, listingVariants } = await import("../../service/http/static/hashing/variants.js");
  const { distance } = await import("./photos.mjs");
  const random = rng(13);
  // Within the downscale's side, and past it in whole and in part blocks.
  for (const [width, height] of [[180, 97], [640, 480], [701, 530]]) {
    const image = randomImage(random, width, height);
    const listed = new Map(listingVariants(image, ["pdq"]).map((v) => [v.name, v.hash]));
    for (const { name } of ORIENTATIONS.slice(1)) {
      const turned = listingVariants(transpose(image, name), ["pdq"]).find((v) => v.name === "small");
      const d = distance(turned.hash, listed.get(`small+${name}`));
      assert.ok(d <= 2, `${width}x${height} ${name}: ${d} bits`);
    }
  }
});
