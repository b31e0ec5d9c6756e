"""Robustness benchmark: does a re-upload with simple edits still match, and how often
does an unrelated image match by chance? For every signal and scheme.

    .venv/bin/pip install -q -e '.[bench]'
    .venv/bin/python load_tests/robustness_benchmark.py

Images: the photos bundled in scikit-image's wheel plus generated ones (seeded).
Each is listed, then every transform in hashmatch.standins.TRANSFORMS is applied
and the result checked. Schemes, side by side in one run:

- plain: the image's hash is listed, the upload's hash is checked;
- old: the robust scheme before issue 23 (old_listing / old_probes below): every
  variant hashed from the full image turned, trimmed, cropped or resized to 64 and
  128 px (PDQ); 36-52 hashes per check for PDQ and pHash;
- robust: today's default (hashmatch.variants): every variant derived from one
  shared downscale; pHash, checked beside PDQ, sends its whole-image hash only;
- old bare / robust bare (PDQ, pHash): the upload checked as the scheme checks it
  against a list of bare hashes (another hotline's, no listed variants).

"pdq or phash" is the default check: either signal within its threshold.

Recall is the share of (image, transform) whose nearest listed variant is within
the threshold. False matches are counted over every pair of unrelated images
(the bundled photos and generated ones), and over a large set of distinct
generated images: for plain hashes all pairs of --synthetic images, for the
robust scheme --synthetic-robust listed images against as many other uploads.
Rates are per (upload, listed image) pair: multiply by a list's size for the
false matches one check against that list expects.

Cost: each bundled photo resized to 1024x768 and saved as JPEG q90 is checked the
plain way, the old way and the robust way in turn (--cpu-rounds times); the
report gives the median client CPU per image of each, the robust/plain ratio and
the hashes each sends (issue 23's targets: at most 2x and 16).

Writes load_tests/results/robustness.md and robustness.png.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from hashmatch.images import ImageSource
from hashmatch.signals import SIGNALS, HashResult, Signal
from hashmatch.standins import TRANSFORMS, bundled_photos, same_scene
from hashmatch.variants import (
    BANDS,
    CROPS,
    ORIENTATIONS,
    Crop,
    listing_variants,
    probe_variants,
    trim_borders,
)

RESULTS = Path(__file__).resolve().parent / "results"
SIGNAL_NAMES = ("pdq", "phash", "dhash", "ahash", "whash")
SCHEMES = ("plain", "old", "robust", "old bare", "robust bare")
DEFAULT_CHECK = ("pdq", "phash")  # the CLI's default signals: variants are shared out
# Where the curves are drawn, per bit length.
MAX_T = {256: 64, 64: 20}
TARGETS = {
    "jpeg q90": 0.99,
    "jpeg q50": 0.99,
    "jpeg q30": 0.99,
    "resize 1/2 (1/4 area)": 0.99,
    "mirror": 0.99,
    "rotate 90": 0.99,
    "rotate 180": 0.99,
    "crop 10% each side": 0.90,
    "text overlay (8% of area)": 0.95,
}
FM_TARGET = 1e-6

Hashes = npt.NDArray[np.uint8]


def generated(seed: int, size: int) -> Image.Image:
    """A distinct synthetic picture: a smooth random field with shapes on it."""
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        x0, x1 = sorted(rng.integers(0, size, 2).tolist())
        y0, y1 = sorted(rng.integers(0, size, 2).tolist())
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = (draw.rectangle, draw.ellipse, draw.line)[int(rng.integers(0, 3))]
        if shape is draw.line:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 12)))
        else:
            shape((x0, y0, x1 + 3, y1 + 3), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))


def as_array(hashes: Sequence[bytes], nbytes: int) -> Hashes:
    return np.frombuffer(b"".join(hashes), np.uint8).reshape(len(hashes), nbytes)


def min_distance(listed: Hashes, probes: Hashes) -> int:
    d = np.bitwise_count(listed[:, None, :] ^ probes[None, :, :]).sum(axis=2, dtype=np.int32)
    return int(d.min())


def _old_trimmed(image: Image.Image) -> Image.Image | None:
    """The old scheme's border trim: one pass, on the full image."""
    box = trim_borders(np.asarray(image.convert("L"), dtype=np.float32), passes=1)
    return None if box is None else image.crop(box)


def _old_hash(signal: Signal, image: Image.Image) -> HashResult:
    return signal.compute(ImageSource(b"", image))


def _old_crops(signal: Signal, image: Image.Image, crops: Sequence[Crop]) -> list[HashResult]:
    w, h = image.size
    return [
        _old_hash(signal, image.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))))
        for _, x0, y0, x1, y1 in crops
    ]


def _old_oriented(signal: Signal, image: Image.Image) -> list[HashResult]:
    return [
        _old_hash(signal, image if t is None else image.transpose(t)) for _, t, _ in ORIENTATIONS
    ]


def _old_rescaled(signal: Signal, image: Image.Image) -> list[Image.Image]:
    sizes = (64, 128) if signal.name == "pdq" else ()
    return [image.resize((n, n), Image.Resampling.LANCZOS) for n in sizes]


def old_probes(image: Image.Image, signal: Signal) -> list[HashResult]:
    """The checking variants before issue 23: 8 orientations of the full image, of its
    trimmed version, 2 band cuts and, for PDQ, 8 orientations at 64 and 128 px."""
    if signal.exact:
        return [_old_hash(signal, image)]
    trimmed = _old_trimmed(image)
    found = _old_oriented(signal, image)
    if trimmed is not None:
        found += _old_oriented(signal, trimmed)
    found += _old_crops(signal, image, BANDS)
    for small in _old_rescaled(signal, image):
        found += _old_oriented(signal, small)
    return list(dict.fromkeys(found))


def old_listing(image: Image.Image, signal: Signal) -> list[HashResult]:
    """The listing variants before issue 23: the image, trimmed, 7 crops, 2 band cuts and,
    for PDQ, at 64 and 128 px; each hashed from the full image."""
    found = [_old_hash(signal, image)]
    if signal.exact:
        return found
    trimmed = _old_trimmed(image)
    if trimmed is not None:
        found.append(_old_hash(signal, trimmed))
    found += _old_crops(signal, image, (*CROPS, *BANDS))
    found += [_old_hash(signal, small) for small in _old_rescaled(signal, image)]
    return list(dict.fromkeys(found))


def checked_with(signal: str) -> list[Signal]:
    """The signals a check of `signal` runs beside: the default pair for PDQ and pHash
    (pHash then leaves the variants to PDQ), the signal alone otherwise."""
    names = DEFAULT_CHECK if signal in DEFAULT_CHECK else (signal,)
    return [SIGNALS[n] for n in names]


def scheme_hashes(image: Image.Image, signal: str, scheme: str, side: str) -> Hashes:
    s = SIGNALS[signal]
    source = ImageSource(b"", image)
    if scheme == "plain" or (scheme.endswith("bare") and side == "listed"):
        found = [s.compute(source).hash]
    elif scheme.startswith("old"):
        found = [h.hash for h in (old_listing if side == "listed" else old_probes)(image, s)]
    else:
        made = (listing_variants if side == "listed" else probe_variants)(
            source, checked_with(signal)
        )
        found = [v.hash.hash for v in made if v.hash.signal == signal]
    return as_array(found, s.nbytes)


def schemes_of(signal: str) -> tuple[str, ...]:
    return SCHEMES if signal in DEFAULT_CHECK else ("plain", "old", "robust")


def image_set(generated_count: int, photos: int | None = None) -> dict[str, Image.Image]:
    """The photos, at most 256 pixels a side (every hash here works on 64 pixels or fewer,
    so this changes little but time), and the generated images."""
    images = {}
    for p in bundled_photos()[:photos]:
        image = Image.open(p).convert("RGB")
        image.thumbnail((256, 256), Image.Resampling.LANCZOS)
        images[p.stem] = image
    for i in range(generated_count):
        images[f"generated-{i}"] = generated(10_000 + i, 256)
    return images


def measure(job: tuple[str, str, int, int | None]) -> tuple[dict[str, list[int]], list[int]]:
    """One signal and scheme over the image set: each transform's distance per image, and
    the distance of every unrelated pair."""
    signal, scheme, generated_count, photos = job
    images = image_set(generated_count, photos)
    names = sorted(images)
    listed = {n: scheme_hashes(images[n], signal, scheme, "listed") for n in names}
    originals = {n: scheme_hashes(images[n], signal, scheme, "probe") for n in names}
    per_transform = {
        tname: [
            min_distance(listed[n], scheme_hashes(transform(images[n]), signal, scheme, "probe"))
            for n in names
        ]
        for tname, transform in TRANSFORMS.items()
    }
    pairs = [
        min_distance(listed[a], originals[b])
        for a in names
        for b in names
        if a != b and not same_scene(a, b)
    ]
    return per_transform, pairs


def synthetic_chunk(args: tuple[int, int, int, str]) -> dict[str, list[bytes]]:
    """Hashes of generated images start..stop: plain per signal, or robust (listed, probes)."""
    start, stop, size, mode = args
    out: dict[str, list[bytes]] = {}
    for seed in range(start, stop):
        image = generated(seed, size)
        for name in SIGNAL_NAMES:
            if mode == "plain":
                out.setdefault(name, []).append(SIGNALS[name].compute(ImageSource(b"", image)).hash)
            else:
                listed = scheme_hashes(image, name, "robust", "listed")
                probes = scheme_hashes(image, name, "robust", "probe")
                out.setdefault(f"{name}/listed", []).append(listed.tobytes())
                out.setdefault(f"{name}/probes", []).append(probes.tobytes())
    return out


def in_parallel(count: int, size: int, mode: str, first_seed: int) -> dict[str, list[bytes]]:
    step = max(1, count // 64)
    jobs = [
        (first_seed + a, first_seed + min(count, a + step), size, mode)
        for a in range(0, count, step)
    ]
    merged: dict[str, list[bytes]] = {}
    with ProcessPoolExecutor(os.cpu_count() or 2) as pool:
        for part in pool.map(synthetic_chunk, jobs):
            for k, v in part.items():
                merged.setdefault(k, []).extend(v)
    return merged


def pair_counts(
    queries: Hashes, base: Hashes, radius: int, exclude_self: bool
) -> npt.NDArray[np.int64]:
    """How many (query, base) pairs lie at each distance below `radius`."""
    index = faiss.IndexBinaryFlat(base.shape[1] * 8)
    index.add(np.ascontiguousarray(base))
    counts = np.zeros(radius, np.int64)
    for start in range(0, len(queries), 20_000):
        q = np.ascontiguousarray(queries[start : start + 20_000])
        lims, d, labels = index.range_search(q, radius)
        d = d.astype(np.int64)
        if exclude_self:
            rows = np.repeat(np.arange(len(q)) + start, np.diff(lims).astype(np.int64))
            d = d[labels != rows]
        counts += np.bincount(d, minlength=radius)[:radius]
    return counts


def _jpeg_1024(path: Path) -> bytes:
    image = Image.open(path).convert("RGB").resize((1024, 768), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def client_cost(rounds: int, photos: int | None = None) -> dict[str, tuple[float, float, float]]:
    """Per way of checking (plain, old, robust) with the default signals: the median over
    the photos of each one's median client CPU (ms) to decode and hash a 1024x768 JPEG,
    and the fewest and most hashes it sends. The three ways take turns on each image, so
    the machine's load falls on them alike."""
    signals = [SIGNALS[n] for n in DEFAULT_CHECK]

    def plain(data: bytes) -> int:
        source = ImageSource(data)
        return len([s.compute(source) for s in signals])

    def old(data: bytes) -> int:
        image = ImageSource(data).rgb
        return sum(len(old_probes(image, s)) for s in signals)

    def robust(data: bytes) -> int:
        return len(probe_variants(ImageSource(data), signals))

    ways = {"plain": plain, "old": old, "robust": robust}
    cpu: dict[str, list[float]] = {w: [] for w in ways}
    probes: dict[str, list[int]] = {w: [] for w in ways}
    for path in bundled_photos()[:photos]:
        data = _jpeg_1024(path)
        times: dict[str, list[float]] = {w: [] for w in ways}
        for _ in range(rounds):
            for way, check in ways.items():
                started = time.process_time()
                probes[way].append(check(data))
                times[way].append(time.process_time() - started)
        for way in ways:
            cpu[way].append(float(np.median(times[way])))
    return {
        w: (1000 * float(np.median(cpu[w])), float(min(probes[w])), float(max(probes[w])))
        for w in ways
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--generated", type=int, default=74, help="generated images beside the photos"
    )
    parser.add_argument("--synthetic", type=int, default=200_000)
    parser.add_argument("--synthetic-robust", type=int, default=4_000)
    parser.add_argument("--cpu-rounds", type=int, default=5, help="timings per image and way")
    parser.add_argument(
        "--photos", type=int, default=None, help="only the first N bundled photos (a smoke run)"
    )
    parser.add_argument(
        "--cost-only", action="store_true", help="print the client cost table and stop"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the report")
    args = parser.parse_args()
    started = time.perf_counter()

    print("client cost of a check, 1024x768 JPEG ...", flush=True)
    cost = client_cost(args.cpu_rounds, args.photos)
    print("\n".join(cost_lines(cost)), flush=True)
    if args.cost_only:
        return

    images = image_set(args.generated, args.photos)
    names = sorted(images)
    print(
        f"{len(names)} images ({args.generated} generated), {len(TRANSFORMS)} transforms",
        flush=True,
    )
    # distances[signal][scheme][transform] = min distance per image
    distances: dict[str, dict[str, dict[str, list[int]]]] = {}
    unrelated: dict[str, dict[str, list[int]]] = {}
    with ProcessPoolExecutor(os.cpu_count() or 2) as pool:
        jobs = [
            (signal, scheme, args.generated, args.photos)
            for signal in SIGNAL_NAMES
            for scheme in schemes_of(signal)
        ]
        for (signal, scheme, _, _), (per_transform, pairs) in zip(
            jobs, pool.map(measure, jobs), strict=True
        ):
            distances.setdefault(signal, {})[scheme] = per_transform
            unrelated.setdefault(signal, {})[scheme] = pairs
            print(f"  {signal} {scheme}: done at {time.perf_counter() - started:.0f}s", flush=True)

    print(f"hashing {args.synthetic:,} generated images", flush=True)
    plain = in_parallel(args.synthetic, 128, "plain", 1_000_000)
    synthetic_fm: dict[str, npt.NDArray[np.float64]] = {}
    for signal in SIGNAL_NAMES:
        bits = SIGNALS[signal].bits
        h = as_array(plain[signal], bits // 8)
        counts = pair_counts(h, h, MAX_T[bits] + 1, exclude_self=True)
        n = len(h)
        synthetic_fm[signal] = np.cumsum(counts) / (n * (n - 1))
    print(f"hashing {args.synthetic_robust:,} generated images in every variant", flush=True)
    robust = in_parallel(2 * args.synthetic_robust, 128, "robust", 5_000_000)
    robust_fm: dict[str, npt.NDArray[np.float64]] = {}
    m = args.synthetic_robust
    for signal in SIGNAL_NAMES:
        nbytes = SIGNALS[signal].nbytes
        bits = nbytes * 8
        listed_rows = [
            np.frombuffer(b, np.uint8).reshape(-1, nbytes) for b in robust[f"{signal}/listed"][:m]
        ]
        probe_rows = [
            np.frombuffer(b, np.uint8).reshape(-1, nbytes) for b in robust[f"{signal}/probes"][m:]
        ]
        owner_l = np.repeat(np.arange(m), [len(r) for r in listed_rows])
        owner_p = np.repeat(np.arange(m), [len(r) for r in probe_rows])
        listed_all, probes_all = np.concatenate(listed_rows), np.concatenate(probe_rows)
        # Per (upload, listed image) pair: its smallest distance over all variant pairs.
        index = faiss.IndexBinaryFlat(bits)
        index.add(np.ascontiguousarray(listed_all))
        best: dict[tuple[int, int], int] = {}
        radius = MAX_T[bits] + 1
        for start in range(0, len(probes_all), 20_000):
            lims, d, labels = index.range_search(
                np.ascontiguousarray(probes_all[start : start + 20_000]), radius
            )
            rows = np.repeat(np.arange(len(lims) - 1) + start, np.diff(lims).astype(np.int64))
            for upload, entry, dist in zip(
                owner_p[rows].tolist(),
                owner_l[labels].tolist(),
                d.astype(np.int64).tolist(),
                strict=True,
            ):
                if dist < best.get((upload, entry), radius):
                    best[upload, entry] = dist
        counts = np.bincount(np.fromiter(best.values(), np.int64, len(best)), minlength=radius)[
            :radius
        ]
        robust_fm[signal] = np.cumsum(counts) / (m * m)

    write_report(
        args,
        names,
        distances,
        unrelated,
        synthetic_fm,
        robust_fm,
        cost,
        time.perf_counter() - started,
    )


def recall(ds: list[int], t: int) -> float:
    return float(np.mean(np.array(ds) <= t))


def fm_limit(fm: npt.NDArray[np.float64], max_t: int) -> tuple[int, str]:
    """The largest threshold at or below FM_TARGET, and how to print it."""
    ok = [t for t in range(max_t + 1) if fm[t] <= FM_TARGET]
    if not ok:
        return -1, "none"
    return ok[-1], f"≥{ok[-1]}" if ok[-1] == max_t else str(ok[-1])


def target_recall(per_transform: dict[str, list[int]], t: int) -> str:
    """Mean recall over the target transforms at threshold t, and the worst of them."""
    recalls = {tn: recall(per_transform[tn], t) for tn in TARGETS}
    worst = min(recalls, key=lambda tn: recalls[tn])
    return (
        f"{100 * float(np.mean(list(recalls.values()))):.1f}% ({worst} {100 * recalls[worst]:.0f}%)"
    )


def either(pdq: list[int], phash: list[int]) -> float:
    """How often PDQ or pHash (the CLI's default signals) is within its threshold."""
    t_pdq, t_phash = SIGNALS["pdq"].threshold, SIGNALS["phash"].threshold
    return float(np.mean((np.array(pdq) <= t_pdq) | (np.array(phash) <= t_phash)))


def cost_lines(cost: dict[str, tuple[float, float, float]]) -> list[str]:
    plain_ms = cost["plain"][0]
    lines = [
        "| way of checking (pdq,phash) | client CPU per 1024x768 JPEG, median ms | x plain "
        "| hashes sent per image |",
        "|---|---:|---:|---:|",
    ]
    for way, (ms, least, most) in cost.items():
        sent = f"{least:.0f}" if least == most else f"{least:.0f}-{most:.0f}"
        lines.append(f"| {way} | {ms:.1f} | {ms / plain_ms:.2f} | {sent} |")
    return lines


def cell(r: float, target: float | None, old: float | None = None) -> str:
    """A recall: bold below its target, marked where it is lower than the old scheme's."""
    text = f"{100 * r:.0f}%"
    if old is not None and round(100 * r) < round(100 * old):
        text += " ▼"
    return f"**{text}**" if target is not None and r < target else text


def write_report(
    args: argparse.Namespace,
    names: list[str],
    distances: dict[str, dict[str, dict[str, list[int]]]],
    unrelated: dict[str, dict[str, list[int]]],
    synthetic_fm: dict[str, npt.NDArray[np.float64]],
    robust_fm: dict[str, npt.NDArray[np.float64]],
    cost: dict[str, tuple[float, float, float]],
    seconds: float,
) -> None:
    columns = [(s, sc) for s in SIGNAL_NAMES for sc in schemes_of(s)]
    head = " | ".join(f"{s} {sc}" for s, sc in columns)
    lines = [
        f"# Robustness of matching, {date.today().isoformat()}",
        "",
        "Command: `.venv/bin/python load_tests/robustness_benchmark.py"
        f"{' ' if len(sys.argv) > 1 else ''}{shlex.join(sys.argv[1:])}` ({seconds / 60:.0f} min, "
        f"{os.cpu_count()} cores). "
        f"{len(names)} images: the {len(names) - args.generated} photos bundled with "
        f"scikit-image and {args.generated} generated ones. Recall at each signal's "
        "configured threshold "
        + ", ".join(f"{s} {SIGNALS[s].threshold}" for s in SIGNAL_NAMES)
        + "; schemes as in the script's docstring. **Bold**: below the issue's target.",
        "",
        f"| transform | {head} |",
        "|---|" + "---:|" * len(columns),
    ]
    lines[-2] += " pdq or phash, old | pdq or phash, robust |"
    lines[-1] += "---:|---:|"
    for tname in TRANSFORMS:
        cells = []
        target = TARGETS.get(tname)

        for s, sc in columns:
            r = recall(distances[s][sc][tname], SIGNALS[s].threshold)
            old = (
                recall(distances[s]["old"][tname], SIGNALS[s].threshold) if sc == "robust" else None
            )
            cells.append(cell(r, target, old))
        old_either = either(distances["pdq"]["old"][tname], distances["phash"]["old"][tname])
        cells.append(cell(old_either, target))
        r = either(distances["pdq"]["robust"][tname], distances["phash"]["robust"][tname])
        cells.append(cell(r, target, old_either))
        lines.append(f"| {tname} | " + " | ".join(cells) + " |")
    lines += ["", "False matches per (upload, listed image) pair at the configured thresholds:", ""]
    lines += [
        f"| set | {head} | pdq or phash, old | pdq or phash, robust |",
        "|---|" + "---:|" * (len(columns) + 2),
    ]
    pairs = len(unrelated["pdq"]["plain"])
    row = []
    for s, sc in columns:
        fm = float(np.mean(np.array(unrelated[s][sc]) <= SIGNALS[s].threshold))
        row.append(f"{fm:.1e}")
    row.append(f"{either(unrelated['pdq']['old'], unrelated['phash']['old']):.1e}")
    row.append(f"{either(unrelated['pdq']['robust'], unrelated['phash']['robust']):.1e}")
    lines.append(f"| unrelated photo/generated pairs ({pairs:,}) | " + " | ".join(row) + " |")
    row = []
    for s, sc in columns:
        t = SIGNALS[s].threshold
        fm = (
            synthetic_fm[s][t]
            if sc == "plain"
            else (robust_fm[s][t] if sc == "robust" else float("nan"))
        )
        row.append("—" if np.isnan(fm) else f"{fm:.1e}")
    t_pdq, t_phash = SIGNALS["pdq"].threshold, SIGNALS["phash"].threshold
    row.append("—")
    row.append(f"≤{robust_fm['pdq'][t_pdq] + robust_fm['phash'][t_phash]:.1e}")
    lines.append(
        f"| generated images (plain: {args.synthetic:,}² pairs; robust: "
        f"{args.synthetic_robust:,}² pairs) | " + " | ".join(row) + " |"
    )
    lines += ["", "## Client cost of a check", ""]
    lines += cost_lines(cost)
    lines += [
        "",
        "Each bundled photo resized to 1024x768 and saved as JPEG q90; decoding included; "
        f"median of {args.cpu_rounds} timings (process CPU) per image, then over the photos; "
        "the three ways take turns on each image.",
    ]
    lines += ["", "## Threshold calibration", ""]
    lines += [
        "Largest threshold whose false-match rate over the generated images is at most "
        f"{FM_TARGET:.0e} per pair (≥ the curve's end when none was seen up to it), and the "
        "robust scheme's recall over the target transforms there; the worst target "
        "transform in brackets.",
        "",
        "| signal | configured | recall at configured, robust | ≤1e-6, plain | ≤1e-6, robust "
        "| recall there, robust |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in SIGNAL_NAMES:
        t_ok = {
            scheme: fm_limit(fm, MAX_T[SIGNALS[s].bits])
            for scheme, fm in (("plain", synthetic_fm[s]), ("robust", robust_fm[s]))
        }
        lines.append(
            f"| {s} | {SIGNALS[s].threshold} | "
            f"{target_recall(distances[s]['robust'], SIGNALS[s].threshold)} | "
            f"{t_ok['plain'][1]} | {t_ok['robust'][1]} | "
            f"{target_recall(distances[s]['robust'], t_ok['robust'][0])} |"
        )
    text = "\n".join(lines) + "\n"
    args.results.mkdir(exist_ok=True)
    (args.results / "robustness.md").write_text(text)
    plot(distances, synthetic_fm, robust_fm, args.results)
    print(text)


def plot(
    distances: dict[str, dict[str, dict[str, list[int]]]],
    synthetic_fm: dict[str, npt.NDArray[np.float64]],
    robust_fm: dict[str, npt.NDArray[np.float64]],
    results: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SIGNAL_NAMES), figsize=(4 * len(SIGNAL_NAMES), 4))
    for ax, s in zip(axes, SIGNAL_NAMES, strict=True):
        bits = SIGNALS[s].bits
        ts = np.arange(MAX_T[bits] + 1)
        for sc, style in (("plain", "--"), ("robust", "-")):
            rec = [
                float(np.mean([recall(distances[s][sc][tn], int(t)) for tn in TARGETS])) for t in ts
            ]
            ax.plot(ts, rec, style, color="tab:blue", label=f"recall, {sc}")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"threshold (of {bits} bits)")
        ax.set_title(s)
        ax2 = ax.twinx()
        ax2.semilogy(
            ts,
            np.maximum(synthetic_fm[s], 1e-12),
            "--",
            color="tab:red",
            label="false matches, plain",
        )
        ax2.semilogy(
            ts, np.maximum(robust_fm[s], 1e-12), "-", color="tab:red", label="false matches, robust"
        )
        ax2.axhline(FM_TARGET, color="grey", lw=0.8)
        ax.axvline(SIGNALS[s].threshold, color="black", lw=0.8)
        ax2.set_ylim(1e-12, 1)
        if s == SIGNAL_NAMES[0]:
            ax.set_ylabel("recall over the target transforms")
            ax.legend(loc="lower left", fontsize=7)
        if s == SIGNAL_NAMES[-1]:
            ax2.set_ylabel("false matches per pair (log; 1e-12 = none)")
            ax2.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(results / "robustness.png", dpi=100)


if __name__ == "__main__":
    main()
