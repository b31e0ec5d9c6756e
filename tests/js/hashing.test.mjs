// The page's PDQ and pHash against the CLI's, on every bundled photo: the original within
// 2 bits, each listing variant's PDQ within 8 (pHash within 2), the same variants listed
// and the same photos refused. Prints the distance distribution per signal and variant.

import assert from "node:assert/strict";
import { test } from "node:test";

import { pdqLuma, pillowGrey } from "../../service/http/static/hashing/luma.js";
import { pdqFromLuma } from "../../service/http/static/hashing/pdq.js";
import { phashFromGrey } from "../../service/http/static/hashing/phash.js";
import {
  BORDER_TOLERANCE,
  DEFAULT_SIGNALS,
  LISTING_VARIANTS,
  MIN_KEPT,
  ORIENTATIONS,
  SIGNALS,
  TRIM_PASSES,
  listingEntries,
  listingVariants,
} from "../../service/http/static/hashing/variants.js";
import { MAX_SIDE } from "../../service/http/static/hashing/downscale.js";
import { bundledPhotos, distance } from "./photos.mjs";

const ORIGINAL_BOUND = { pdq: 2, phash: 2 };
const VARIANT_BOUND = { pdq: 8, phash: 2 };

function summary(rows) {
  // rows: {signal, variant, d}; one line per (signal, variant): photos, max, median.
  const groups = new Map();
  for (const { signal, variant, d } of rows) {
    const key = `${signal} ${variant}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(d);
  }
  const lines = [];
  for (const [key, ds] of [...groups].sort()) {
    ds.sort((a, b) => a - b);
    const median = ds.length % 2 ? ds[ds.length >> 1] : (ds[ds.length / 2 - 1] + ds[ds.length / 2]) / 2;
    const equal = ds.filter((d) => d === 0).length;
    lines.push(`${key.padEnd(28)} photos ${String(ds.length).padStart(3)}  equal ${String(equal).padStart(3)}  max ${String(ds.at(-1)).padStart(2)}  median ${median}`);
  }
  return lines.join("\n");
}

test("the page hashes with the CLI's tables: signals, turns, crops, bands, sizes, refusals", () => {
  const { tables } = bundledPhotos();
  assert.deepEqual(DEFAULT_SIGNALS, tables.signals);
  const crops = LISTING_VARIANTS.filter((v) => v.take === "crop").map((v) => [v.name, ...v.box]);
  assert.deepEqual(crops, tables.crops);
  assert.deepEqual(ORIENTATIONS.map((o) => o.name), tables.orientations);
  assert.deepEqual(LISTING_VARIANTS.map((v) => v.name).sort(), tables.listing_variant_names);
  assert.equal(BORDER_TOLERANCE, tables.border_tolerance);
  assert.equal(MIN_KEPT, tables.min_kept);
  assert.equal(TRIM_PASSES, tables.trim_passes);
  assert.equal(MAX_SIDE, tables.max_side);
  for (const [name, rules] of Object.entries(tables.signal_rules)) {
    assert.deepEqual(
      { bits: SIGNALS[name].bits, ones_range: SIGNALS[name].onesRange, min_quality: SIGNALS[name].minQuality, square_size: SIGNALS[name].squareSize },
      rules,
      name,
    );
  }
});

test("every bundled photo: PDQ and pHash within 2 bits of `hashmatch hash`", () => {
  const { photos, pixels } = bundledPhotos();
  const rows = [];
  for (const photo of photos) {
    const image = pixels(photo.name);
    const box = { x: 0, y: 0, w: image.width, h: image.height };
    const pdq = pdqFromLuma(pdqLuma(image), image.width, box);
    const phash = phashFromGrey(pillowGrey(image), image.width, box);
    const dPdq = distance(pdq.hash, photo.hash.pdq.hash);
    const dPhash = distance(phash.hash, photo.hash.phash.hash);
    rows.push({ signal: "pdq", variant: `hash (${photo.format})`, d: dPdq });
    rows.push({ signal: "phash", variant: `hash (${photo.format})`, d: dPhash });
    assert.ok(dPdq <= ORIGINAL_BOUND.pdq, `${photo.name}: PDQ ${dPdq} bits from the CLI's`);
    assert.ok(dPhash <= ORIGINAL_BOUND.phash, `${photo.name}: pHash ${dPhash} bits from the CLI's`);
    assert.ok(Math.abs(pdq.quality - photo.hash.pdq.quality) <= 2, `${photo.name}: quality ${pdq.quality} vs ${photo.hash.pdq.quality}`);
  }
  console.log(`distance to \`hashmatch hash\` (bits), ${photos.length} photos decoded by Pillow:\n${summary(rows)}`);
});

test("every bundled photo: the CLI's listing variants, PDQ within 8 bits, pHash within 2", () => {
  const { photos, pixels } = bundledPhotos();
  const rows = [];
  for (const photo of photos) {
    const page = new Map(listingVariants(pixels(photo.name)).map((v) => [`${v.signal} ${v.name}`, v]));
    const cli = new Map(photo.variants.map((v) => [`${v.signal} ${v.name}`, v]));
    assert.deepEqual([...page.keys()].sort(), [...cli.keys()].sort(), `${photo.name}: variants listed`);
    for (const [key, want] of cli) {
      const got = page.get(key);
      const d = distance(got.hash, want.hash);
      rows.push({ signal: want.signal, variant: want.name, d });
      assert.ok(d <= VARIANT_BOUND[want.signal], `${photo.name} ${key}: ${d} bits from the CLI's`);
    }
  }
  console.log(`listing variants, distance to the CLI's (bits):\n${summary(rows)}`);
});

test("every bundled photo: the entries `hashmatch submit` sends, and the same refusals", () => {
  const { photos, pixels } = bundledPhotos();
  let refusedPhotos = 0;
  for (const photo of photos) {
    const { entries, refused } = listingEntries(pixels(photo.name));
    const key = (e) => `${e.signal} ${e.variant}`;
    assert.deepEqual(entries.map(key).sort(), photo.entries.map(key).sort(), photo.name);
    const cliRefused = DEFAULT_SIGNALS.filter((s) => !photo.entries.some((e) => e.signal === s && e.variant === ""));
    assert.deepEqual(refused.map((r) => r.signal).sort(), cliRefused.sort(), photo.name);
    if (refused.length) refusedPhotos++;
  }
  // clock_motion (PDQ quality 34) is the bundled photo a victim's page must explain.
  assert.ok(refusedPhotos >= 1);
});
