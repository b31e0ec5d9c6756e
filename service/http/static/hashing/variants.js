// What the page lists a photo under: the same variants, hashes and refusals as the CLI's
// `submit` (hashmatch/variants.py listing_variants, hashmatch/submit_commands.py
// case_entries). A re-upload is often cropped, framed or shrunk; the list must hold the
// hashes such copies meet when the CLI checks them.
//
// The tables below mirror the Python definitions one for one; tests/test_portal_hashing.py
// fails when they drift apart.

import { downscale, pyRound, tentResample } from "./downscale.js";
import { pdqLuma, pillowGrey } from "./luma.js";
import { pdqFromSquare, pdqHasher } from "./pdq.js";
import { phashHasher } from "./phash.js";

export { pyRound };

/** The signals the page hashes (the CLI's defaults) and what makes a hash unsafe to list.
 * squareSize: the signal hashes its variants from a luminance square of that side. */
export const SIGNALS = {
  pdq: { bits: 256, onesRange: [96, 160], minQuality: 50, squareSize: 64 },
  phash: { bits: 64, onesRange: [8, 56], minQuality: null, squareSize: null },
};

export const DEFAULT_SIGNALS = ["pdq", "phash"];

/** hashmatch.variants.ORIENTATIONS in its order: each turn of a square, as numpy turns
 * an array. `at(n, y, x)` is where in the n x n square out[y][x] comes from; "rot90" is
 * np.rot90 (counter-clockwise, as Pillow's ROTATE_90). */
export const ORIENTATIONS = [
  { name: "original", at: (n, y, x) => y * n + x },
  { name: "rot90", at: (n, y, x) => x * n + (n - 1 - y) },
  { name: "rot180", at: (n, y, x) => (n - 1 - y) * n + (n - 1 - x) },
  { name: "rot270", at: (n, y, x) => (n - 1 - x) * n + y },
  { name: "flip", at: (n, y, x) => (n - 1 - y) * n + x },
  { name: "mirror", at: (n, y, x) => y * n + (n - 1 - x) },
  { name: "transpose", at: (n, y, x) => x * n + y },
  { name: "transverse", at: (n, y, x) => (n - 1 - x) * n + (n - 1 - y) },
];

/** An n x n square turned as ORIENTATIONS[turn] says. */
export function turnSquare(square, n, turn) {
  const { at } = ORIENTATIONS[turn];
  const out = new Float32Array(n * n);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) out[y * n + x] = square[at(n, y, x)];
  }
  return out;
}

/**
 * Listing variants in the CLI's order, for every signal. `take` says which pixels: the
 * whole photo at full size (as every other user of the signal hashes it); or, from the
 * photo's one downscale (downscale.js), the whole of it as the signal's square, turned
 * (signals hashing squares only), the picture without uniform borders, or a crop (left,
 * top, right, bottom as fractions).
 */
export const LISTING_VARIANTS = [
  { name: "original", take: "whole" },
  ...ORIENTATIONS.map(({ name }, turn) => ({ name: turn ? `small+${name}` : "small", take: "small", turn })),
  { name: "trimmed", take: "trimmed" },
  { name: "crop-center-90", take: "crop", box: [0.05, 0.05, 0.95, 0.95] },
  { name: "crop-center-80", take: "crop", box: [0.1, 0.1, 0.9, 0.9] },
  { name: "crop-center-70", take: "crop", box: [0.15, 0.15, 0.85, 0.85] },
  { name: "crop-left-80", take: "crop", box: [0.0, 0.0, 0.8, 1.0] },
  { name: "crop-right-80", take: "crop", box: [0.2, 0.0, 1.0, 1.0] },
  { name: "crop-top-80", take: "crop", box: [0.0, 0.0, 1.0, 0.8] },
  { name: "crop-bottom-80", take: "crop", box: [0.0, 0.2, 1.0, 1.0] },
  { name: "band-top-90", take: "crop", box: [0.0, 0.1, 1.0, 1.0] },
  { name: "band-bottom-90", take: "crop", box: [0.0, 0.0, 1.0, 0.9] },
];

/** Border trimming: grey levels a border line may stray from its median; share of a
 * side always kept; layers of padding trimmed. */
export const BORDER_TOLERANCE = 12;
export const MIN_KEPT = 0.3;
export const TRIM_PASSES = 3;

function median32(values) {
  const sorted = Float32Array.from(values).sort();
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : Math.fround(Math.fround(sorted[mid - 1] + sorted[mid]) / 2);
}

/**
 * The box inside uniform borders (letterbox, frames, screenshot padding), or null if
 * there are none: hashmatch.variants.trim_borders on the downscale's luma.
 * @param {Float32Array} luma the downscale's luma
 * @param {number} w width
 * @param {number} h height
 */
export function trimBorders(luma, w, h, passes = TRIM_PASSES) {
  const least = Math.max(2, Math.trunc(Math.min(h, w) / 50));
  let [left, top, right, bottom] = [0, 0, w, h];
  // The n-th line inward from a side of the current area.
  const line = (side, n) => {
    const across = side === "left" || side === "right" ? bottom - top : right - left;
    const out = new Float32Array(across);
    for (let i = 0; i < across; i++) {
      if (side === "left") out[i] = luma[(top + i) * w + left + n];
      else if (side === "top") out[i] = luma[(top + n) * w + left + i];
      else if (side === "right") out[i] = luma[(top + i) * w + right - 1 - n];
      else out[i] = luma[(bottom - 1 - n) * w + left + i];
    }
    return out;
  };
  const run = (side, limit) => {
    let n = 0;
    for (; n < limit; n++) {
      const values = line(side, n);
      const mid = median32(values);
      if (!values.every((v) => Math.abs(Math.fround(v - mid)) <= BORDER_TOLERANCE)) break;
    }
    return n;
  };
  for (let pass = 0; pass < passes; pass++) {
    const roomH = Math.max(0, Math.floor((bottom - top - pyRound(h * MIN_KEPT)) / 2));
    const roomW = Math.max(0, Math.floor((right - left - pyRound(w * MIN_KEPT)) / 2));
    const cut = [run("left", roomW), run("top", roomH), run("right", roomW), run("bottom", roomH)];
    if (Math.max(...cut) < least) break;
    [left, top, right, bottom] = [left + cut[0], top + cut[1], right - cut[2], bottom - cut[3]];
  }
  if (left === 0 && top === 0 && right === w && bottom === h) return null;
  return { x: left, y: top, w: right - left, h: bottom - top };
}

/** hashmatch.downscale.sub_box: the part of `box` between fractions of its sides. */
function subBox(box, [x0, y0, x1, y1]) {
  const left = box.x + pyRound(x0 * box.w);
  const top = box.y + pyRound(y0 * box.h);
  return { x: left, y: top, w: box.x + pyRound(x1 * box.w) - left, h: box.y + pyRound(y1 * box.h) - top };
}

function ones(hex) {
  let n = 0;
  for (const c of hex) {
    for (let v = parseInt(c, 16); v; v >>= 1) n += v & 1;
  }
  return n;
}

/** Why a hash must not go on a list (featureless, too few or many bits, low quality), or
 * null: hashmatch.signals.base.Signal.degenerate. */
export function degenerate(signal, hash, quality) {
  const { bits, onesRange, minQuality } = SIGNALS[signal];
  const n = ones(hash);
  if (n === 0 || n === bits) return { reason: "featureless", signal };
  if (n < onesRange[0] || n > onesRange[1]) return { reason: "too-few-features", signal, ones: n };
  if (minQuality !== null && quality !== null && quality < minQuality) {
    return { reason: "low-quality", signal, quality, minQuality };
  }
  return null;
}

// The signal's hash of a box of the downscale (hashmatch.variants.derived): PDQ from the
// box's luma resampled to its square; pHash from the box of the colour copy.
function derived(signal, small, box) {
  const size = SIGNALS[signal].squareSize;
  if (size) return pdqFromSquare(square(small, box, size));
  small.phash ??= phashHasher(small.grey, small.width, small.height);
  return { hash: small.phash(box).hash, quality: null };
}

// The box's luma resampled to a size x size square (hashmatch.downscale.Downscale.square).
function square(small, box, size) {
  return tentResample(small.luma, small.width, box, size, size);
}

// The signal's hash of the whole downscale's square turned as ORIENTATIONS[turn]
// (hashmatch.variants.turned_squares); the square is resampled once for all 8.
function turnedSquare(signal, small, turn) {
  const size = SIGNALS[signal].squareSize;
  small.squares ??= new Map();
  if (!small.squares.has(size)) small.squares.set(size, square(small, { x: 0, y: 0, w: small.width, h: small.height }, size));
  return pdqFromSquare(turnSquare(small.squares.get(size), size, turn));
}

// Each signal's hash of the whole photo at full size.
function whole(signal, image) {
  const box = { x: 0, y: 0, w: image.width, h: image.height };
  if (signal === "pdq") return pdqHasher(pdqLuma(image), image.width, image.height)(box);
  return { hash: phashHasher(pillowGrey(image), image.width, image.height)(box).hash, quality: null };
}

/**
 * Listing variants' hashes in the CLI's order, not yet de-duplicated, each with its place
 * in that order: those `wanted(signal, row)` selects, so that several workers can share
 * one photo's variants (mergeVariants puts them back together).
 * @param {{width: number, height: number, data: ArrayLike<number>}} image RGBA pixels,
 *   oriented as displayed
 * @param {string[]} signals signal names, in the CLI's order
 * @param {(signal: string, row: object) => boolean} wanted which rows to hash
 * @returns {{order: number, name: string, signal: string, hash: string, quality: number|null}[]}
 */
export function variantHashes(image, signals = DEFAULT_SIGNALS, wanted = () => true) {
  let small = null;
  let trimmed;
  const found = [];
  signals.forEach((signal, s) => {
    LISTING_VARIANTS.forEach((row, r) => {
      if (!wanted(signal, row)) return;
      const add = (hashed) => found.push({ order: s * LISTING_VARIANTS.length + r, name: row.name, signal, ...hashed });
      if (row.take === "whole") {
        add(whole(signal, image));
        return;
      }
      if (row.take === "small" && !SIGNALS[signal].squareSize) return;
      small ??= downscale(image);
      const all = { x: 0, y: 0, w: small.width, h: small.height };
      if (row.take === "small") add(turnedSquare(signal, small, row.turn));
      else if (row.take === "crop") add(derived(signal, small, subBox(all, row.box)));
      else {
        if (trimmed === undefined) trimmed = trimBorders(small.luma, small.width, small.height);
        if (trimmed !== null) add(derived(signal, small, trimmed));
      }
    });
  });
  return found;
}

/**
 * Split one photo's variants between `parts` workers: the full-size hashes are the
 * work (PDQ's box filter over every pixel, pHash's resample of every pixel); everything
 * else comes from the one small downscale.
 */
export function shares(parts, signals = DEFAULT_SIGNALS) {
  const job = (signal, row) => (row.take === "whole" ? signals.indexOf(signal) : signals.length);
  return Array.from({ length: parts }, (_, part) => (signal, row) => Math.min(job(signal, row), parts - 1) === part);
}

/** Parts of variantHashes put back in order, one variant per (signal, hash), the first
 * named: hashmatch.variants._distinct. */
export function mergeVariants(...parts) {
  const seen = new Set();
  const merged = [];
  for (const v of parts.flat().sort((a, b) => a.order - b.order)) {
    const key = `${v.signal}:${v.hash}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const { order, ...variant } = v;
    merged.push(variant);
  }
  return merged;
}

/**
 * Every listing variant's hash, de-duplicated per signal and hash (the first name kept),
 * as hashmatch.variants.listing_variants gives them.
 * @returns {{name: string, signal: string, hash: string, quality: number|null}[]}
 */
export function listingVariants(image, signals = DEFAULT_SIGNALS) {
  return mergeVariants(variantHashes(image, signals));
}

/** Why each listed hash is safe to list or not, as hashmatch.submit_commands.case_entries
 * decides: the entries to send, and why an original was refused. */
export function entriesOf(variants) {
  const entries = [];
  const refused = [];
  for (const v of variants) {
    const problem = degenerate(v.signal, v.hash, v.quality);
    if (problem && v.name === "original") refused.push(problem);
    else if (!problem) {
      entries.push({ signal: v.signal, hash: v.hash, quality: v.quality, variant: v.name === "original" ? "" : v.name });
    }
  }
  return { entries, refused };
}

/**
 * What the page submits for one photo, as the CLI's `submit` does: every variant whose
 * hash is safe to list (the original's variant name empty), and why an original was
 * refused (a photo whose PDQ quality is below 50, a featureless picture).
 * @returns {{entries: {signal: string, hash: string, quality: number|null, variant: string}[],
 *   refused: {signal: string, reason: string}[]}}
 */
export function listingEntries(image, signals = DEFAULT_SIGNALS) {
  return entriesOf(listingVariants(image, signals));
}
