import { Counter, Registry } from "prom-client";

/** What Epufs moved and refused, for /metrics. */
export class EpufsMetrics {
  readonly registry = new Registry();
  readonly bytesIn = new Counter({
    name: "pgmesh_epufs_bytes_in_total",
    help: "Bytes of files stored (puts that completed)",
    registers: [this.registry],
  });
  readonly bytesOut = new Counter({
    name: "pgmesh_epufs_bytes_out_total",
    help: "Bytes sent: file bodies (kind=file) and endpoint archives (kind=archive)",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly quotaRefusals = new Counter({
    name: "pgmesh_epufs_quota_refusals_total",
    help: "Puts refused because the endpoint's files would exceed --endpoint-quota-bytes",
    registers: [this.registry],
  });

  /** Passes `body` through, counting its bytes as they are sent. */
  async *countOut(kind: "file" | "archive", body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of body) {
      this.bytesOut.inc({ kind }, chunk.length);
      yield chunk;
    }
  }
}
