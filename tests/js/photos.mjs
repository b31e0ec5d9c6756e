// The bundled stand-in photos and the CLI's hashes of them, dumped by tests/portal_photos.py
// into HASHMATCH_PHOTO_PIXELS (pytest passes one), or into a fresh temporary directory.

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const HASHING = path.join(REPO, "service/http/static/hashing");

function python() {
  const venv = path.join(REPO, ".venv/bin/python");
  return fs.existsSync(venv) ? venv : "python3";
}

let loaded = null;

/** @returns {{tables: object, photos: object[], pixels: (name: string) => object}} */
export function bundledPhotos() {
  if (loaded) return loaded;
  let dir = process.env.HASHMATCH_PHOTO_PIXELS;
  if (!dir) {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "hashmatch-photos-"));
    execFileSync(python(), ["-m", "tests.portal_photos", dir], { cwd: REPO, stdio: ["ignore", "inherit", "ignore"] });
    process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  const pixels = (name) => {
    const p = manifest.photos.find((x) => x.name === name);
    return { width: p.width, height: p.height, data: new Uint8Array(fs.readFileSync(path.join(dir, `${name}.rgba`))) };
  };
  loaded = { ...manifest, pixels };
  return loaded;
}

/** Bits that differ between two hex hashes of the same length. */
export function distance(a, b) {
  assertSameLength(a, b);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    for (let v = parseInt(a[i], 16) ^ parseInt(b[i], 16); v; v >>= 1) d += v & 1;
  }
  return d;
}

function assertSameLength(a, b) {
  if (a.length !== b.length) throw new Error(`hashes of different lengths: ${a} ${b}`);
}
