// A rank that fails in each of the ways a job can lose one, for test/mpi.test.ts to check that the
// whole job ends in bounded time with a message naming the rank (never a hang). FAULT picks it:
//   kill   rank FAULT_RANK SIGKILLs itself while the others are in the middle of collectives
//          (mpirun sees the death and ends the job)
//   stuck  rank FAULT_RANK stops taking part (sleeps) — alive, so mpirun cannot tell; the other
//          ranks' watched waits time out (LLMTS_MPI_TIMEOUT_S) and MPI_Abort the job
//   throw  rank FAULT_RANK throws (as on bad data on one node): runOnRank prints "rank r: …" and
//          MPI_Abort ends the job with exit code 2
import { runOnRank, startDistributed } from "../../src/dist/distributed.ts";

const fault = process.env.FAULT ?? "kill";
const faultRank = Number(process.env.FAULT_RANK ?? 1);
const dist = startDistributed();
if (dist === null) throw new Error("this script runs under mpirun");

await runOnRank(
  dist,
  () => {
    const buffer = new Float32Array(1 << 20).fill(1);
    for (let iteration = 0; iteration < 1000; iteration++) {
      if (dist.rank === faultRank && iteration === 5) {
        if (fault === "kill") process.kill(process.pid, "SIGKILL");
        if (fault === "stuck") for (;;) Bun.sleepSync(1000);
        if (fault === "throw") throw new Error("train data: /data/train_000000.bin has 12 tokens, fewer than one batch needs (this node's copy is truncated)");
      }
      dist.allreduce(buffer, "sum", `allreduce ${iteration}`);
      buffer.fill(1);
    }
    throw new Error(`rank ${dist.rank} finished every iteration: the fault "${fault}" did not end the job`);
  },
  () => 2,
);
