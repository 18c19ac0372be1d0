// Shared by the scripts test/mpi.test.ts runs under mpirun: each rank runs the same checks and
// records one line per check ("PASS rank r: name" or "FAIL rank r: name: why"), printed and, with
// RESULTS_DIR set, written to RESULTS_DIR/rank-r.txt at the end (mpirun's forwarding can cut
// lines of different ranks into each other; the files are what the bun test reads). Every rank can build every rank's input from the seeds, so the
// references (float64 sums, one process's AdamW) are computed locally and compared with what MPI
// delivered.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Distributed, runOnRank, startDistributed } from "../../src/dist/distributed.ts";
import { rng } from "../helpers/random.ts";

export interface Harness {
  dist: Distributed;
  check(name: string, ok: boolean, why?: () => string): void;
  /** throws unless fn throws an error whose message matches `pattern` */
  expectThrow(name: string, fn: () => unknown, pattern: RegExp): void;
}

/** Runs `body` on this rank under MPI; exits 1 (after every rank finalizes) when a check failed. */
export async function runChecks(body: (h: Harness) => unknown | Promise<unknown>): Promise<void> {
  const max = process.env.MAX_ELEMENTS_PER_CALL;
  const dist = startDistributed(max === undefined ? {} : { maxElementsPerCall: Number(max) });
  if (dist === null) throw new Error("this script runs under mpirun");
  let failures = 0;
  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    process.stdout.write(`${line}\n`);
  };
  const harness: Harness = {
    dist,
    check(name, ok, why) {
      if (ok) say(`PASS rank ${dist.rank}: ${name}`);
      else {
        failures++;
        say(`FAIL rank ${dist.rank}: ${name}: ${why === undefined ? "" : why()}`);
      }
    },
    expectThrow(name, fn, pattern) {
      try {
        fn();
      } catch (error) {
        const message = (error as Error).message;
        harness.check(name, pattern.test(message), () => `threw "${message}", expected ${pattern}`);
        return;
      }
      harness.check(name, false, () => "did not throw");
    },
  };
  await runOnRank(dist, async () => {
    await body(harness);
    if (process.env.RESULTS_DIR) writeFileSync(join(process.env.RESULTS_DIR, `rank-${dist.rank}.txt`), `${lines.join("\n")}\n`);
  });
  if (failures > 0) process.exit(1);
}

/** Seeded floats spread over 2^-10…2^10 in magnitude, both signs. */
export function spreadF32(n: number, seed: number): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() * 2 - 1) * 2 ** Math.floor(next() * 21 - 10);
  return out;
}

/**
 * Seeded "dyadic" floats k·2^-12 with |k| ≤ 2^10: any sum of up to 2^13 of them is exact in
 * float32 (at most 24 significant bits), so every summation order gives the same bits.
 */
export function dyadicF32(n: number, seed: number): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (Math.floor(next() * 2049) - 1024) / 4096;
  return out;
}

/** A 64-bit-ish fingerprint of an array's bytes, to compare arrays across ranks. */
export function fingerprint(a: Float32Array | Float64Array): [number, number] {
  const h = BigInt(Bun.hash(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)));
  return [Number(h >> 32n), Number(h & 0xffffffffn)];
}

/** True when every rank's array has the same bytes. */
export function sameOnAllRanks(dist: Distributed, a: Float32Array | Float64Array): boolean {
  const all = dist.allgatherF64(Float64Array.from(fingerprint(a)));
  for (let r = 1; r < dist.size; r++) if (all[2 * r] !== all[0] || all[2 * r + 1] !== all[1]) return false;
  return true;
}

/** Index and values of the first difference in bits, or null. */
export function firstDifference(got: Float32Array, want: Float32Array): string | null {
  if (got.length !== want.length) return `lengths ${got.length} vs ${want.length}`;
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], want[i])) return `element ${i}: got ${got[i]}, want ${want[i]}`;
  }
  return null;
}
