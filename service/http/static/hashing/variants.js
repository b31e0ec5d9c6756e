// What the page lists a photo under: the same variants, hashes and refusals as the CLI's
// `submit` (hashmatch/variants.py listing_variants, hashmatch/submit_commands.py
// case_entries). A re-upload is often cropped, framed or shrunk; the list must hold the
// hashes such copies meet when the CLI checks them.
//
// The tables below mirror the Python definitions one for one; tests/test_portal_hashing.py
// fails when they drift apart.

import { pdqLuma, pillowGrey } from "./luma.js";
import { pdqHasher } from "./pdq.js";
import { phashHasher } from "./phash.js";
import { resizeLanczos } from "./resample.js";

/** The signals the page hashes (the CLI's defaults) and what makes a hash unsafe to list. */
export const SIGNALS = {
  pdq: { bits: 256, onesRange: [96, 160], minQuality: 50, rescaledSizes: [64, 128] },
  phash: { bits: 64, onesRange: [8, 56], minQuality: null, rescaledSizes: [] },
};

export const DEFAULT_SIGNALS = ["pdq", "phash"];

/**
 * Listing variants in the CLI's order, for every signal. `take` says which pixels:
 * the whole photo, the photo without uniform borders, a crop (left, top, right, bottom as
 * fractions of the photo), or the whole photo resized to each of the signal's fixed
 * square sizes (named scale-<size>).
 */
export const LISTING_VARIANTS = [
  { name: "original", take: "whole" },
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
  { name: "scale", take: "square" },
];

/** Border trimming: grey levels a border line may stray from its colour; share of a
 * side always kept. */
export const BORDER_TOLERANCE = 12;
export const MIN_KEPT = 0.3;

/** Python's round(): halves go to the even neighbour. */
export function pyRound(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

function median(values) {
  const sorted = Array.from(values).sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * The photo's window without uniform borders (letterbox, frames, screenshot padding), or
 * null if it has none: hashmatch.variants.trim_borders on the grey plane.
 * @param {Uint8Array} grey pillowGrey of the photo
 * @param {number} w width
 * @param {number} h height
 */
export function trimBorders(grey, w, h) {
  if (h < 16 || w < 16) return null;
  // The n-th line inward from one side: a row (from the top or bottom) or a column.
  const line = (side, n) => {
    const out = new Int16Array(side === "top" || side === "bottom" ? w : h);
    for (let i = 0; i < out.length; i++) {
      if (side === "top") out[i] = grey[n * w + i];
      else if (side === "bottom") out[i] = grey[(h - 1 - n) * w + i];
      else if (side === "left") out[i] = grey[i * w + n];
      else out[i] = grey[i * w + (w - 1 - n)];
    }
    return out;
  };
  const run = (side, limit) => {
    const colour = median(line(side, 0));
    let n = 0;
    while (n < limit && line(side, n).every((v) => Math.abs(v - colour) <= BORDER_TOLERANCE)) n++;
    return n;
  };
  const maxH = Math.trunc((h * (1 - MIN_KEPT)) / 2);
  const maxW = Math.trunc((w * (1 - MIN_KEPT)) / 2);
  const top = run("top", maxH);
  const bottom = run("bottom", maxH);
  const left = run("left", maxW);
  const right = run("right", maxW);
  if (Math.max(top, bottom, left, right) < Math.max(2, Math.trunc(Math.min(h, w) / 50))) return null;
  return { x: left, y: top, w: w - right - left, h: h - bottom - top };
}

function cropBox([x0, y0, x1, y1], w, h) {
  const left = pyRound(x0 * w);
  const top = pyRound(y0 * h);
  return { x: left, y: top, w: pyRound(x1 * w) - left, h: pyRound(y1 * h) - top };
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

// Per signal: given a photo (and its grey plane, when already made), a function hashing
// any window of it.
const HASHERS = {
  pdq: (image) => {
    const hash = pdqHasher(pdqLuma(image), image.width, image.height);
    return (box) => hash(box);
  },
  phash: (image, grey = pillowGrey(image)) => {
    const hash = phashHasher(grey, image.width, image.height);
    return (box) => ({ hash: hash(box).hash, quality: null });
  },
};

function squared(image, size) {
  const { width: w, height: h, data, channels = 4 } = image;
  const rgb = resizeLanczos(data, w, channels, 3, { x: 0, y: 0, w, h }, size, size);
  return { width: size, height: size, data: rgb, channels: 3 };
}

/**
 * Listing variants' hashes in the CLI's order, not yet de-duplicated, each with its
 * place in that order: those `wanted(signal, row)` selects, so that several workers can
 * share one photo's variants (mergeVariants puts them back together).
 * @param {{width: number, height: number, data: ArrayLike<number>}} image RGBA pixels,
 *   oriented as displayed
 * @param {string[]} signals signal names, in the CLI's order
 * @param {(signal: string, row: object) => boolean} wanted which rows to hash
 * @returns {{order: number, name: string, signal: string, hash: string, quality: number|null}[]}
 */
export function variantHashes(image, signals = DEFAULT_SIGNALS, wanted = () => true) {
  const { width: w, height: h } = image;
  const grey = pillowGrey(image);
  const trimmed = trimBorders(grey, w, h);
  const found = [];
  let order = 0;
  for (const signal of signals) {
    let hashOf = null;
    const add = (name, box, source = null) => {
      const place = order++;
      if (source === null) hashOf ??= HASHERS[signal](image, grey);
      const hashed = source === null ? hashOf(box) : HASHERS[signal](source)(box);
      found.push({ order: place, name, signal, ...hashed });
    };
    for (const row of LISTING_VARIANTS) {
      if (row.take === "square") {
        for (const size of SIGNALS[signal].rescaledSizes) {
          if (wanted(signal, row)) add(`${row.name}-${size}`, { x: 0, y: 0, w: size, h: size }, squared(image, size));
          else order++;
        }
      } else if (row.take === "trimmed" && trimmed === null) {
        order++;
      } else if (!wanted(signal, row)) {
        order++;
      } else if (row.take === "whole") add(row.name, { x: 0, y: 0, w, h });
      else if (row.take === "trimmed") add(row.name, trimmed);
      else add(row.name, cropBox(row.box, w, h));
    }
  }
  return found;
}

// Rough cost of each job, in passes over the photo's pixels (measured in Node): PDQ's box
// filter is ~1 pass along rows (shared by full-width windows) and ~1.8 more per window;
// pHash's horizontal resample ~1.4 (shared by full-width windows); a fixed-size RGB
// resample ~4.2.
function jobCost(signal, row) {
  const area = row.box ? (row.box[2] - row.box[0]) * (row.box[3] - row.box[1]) : row.take === "trimmed" ? 0.8 : 1;
  const fullWidth = row.take === "whole" || (row.box && row.box[0] === 0 && row.box[2] === 1);
  if (row.take === "square") return 4.2 * SIGNALS[signal].rescaledSizes.length;
  if (signal === "pdq") return fullWidth ? 1.8 * area : 2.8 * area;
  return fullWidth ? 0.2 * area : 1.4 * area;
}

/**
 * Split one photo's variants between `parts` workers, about evenly: each worker gets a
 * predicate for variantHashes. Full-width windows of a signal stay together (they share
 * a pass), and so do a signal's fixed sizes.
 */
export function shares(parts, signals = DEFAULT_SIGNALS) {
  const groups = new Map(); // group key -> {cost, members}
  for (const signal of signals) {
    for (const row of LISTING_VARIANTS) {
      const fullWidth = row.take === "whole" || (row.box && row.box[0] === 0 && row.box[2] === 1);
      const key = fullWidth ? `${signal}:full` : `${signal}:${row.name}`;
      const group = groups.get(key) ?? { cost: fullWidth ? (signal === "pdq" ? 1 : 1.4) : 0, members: new Set() };
      group.cost += jobCost(signal, row);
      group.members.add(`${signal}:${row.name}`);
      groups.set(key, group);
    }
  }
  const load = new Array(parts).fill(0);
  const owner = new Map();
  for (const group of [...groups.values()].sort((a, b) => b.cost - a.cost)) {
    const part = load.indexOf(Math.min(...load));
    load[part] += group.cost;
    for (const member of group.members) owner.set(member, part);
  }
  return Array.from({ length: parts }, (_, part) => (signal, row) => owner.get(`${signal}:${row.name}`) === part);
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
