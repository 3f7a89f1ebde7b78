import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { compileServerOptions, serviceOf, type ServerOptions } from "../src/server/index.js";

const base: ServerOptions = { port: 0, services: [], auth: { insecure: true }, logger: pino({ level: "silent" }) };

describe("server options", () => {
  it("defaults host, message limits and grace time", () => {
    expect(compileServerOptions(base)).toMatchObject({
      host: "127.0.0.1",
      readMaxBytes: 4 * 1024 * 1024,
      writeMaxBytes: 4 * 1024 * 1024,
      maxTimeoutMs: undefined,
      shutdownGraceMs: 10_000,
      http2WindowBytes: 8 * 1024 * 1024,
    });
  });

  it("refuses a port outside 0..65535", () => {
    expect(() => compileServerOptions({ ...base, port: 70000 })).toThrow("server port 70000 is not an integer in 0..65535");
  });

  it("refuses a service registered twice", () => {
    const epufs = serviceOf({ service: EpufsService, impl: {} });
    expect(() => compileServerOptions({ ...base, services: [epufs, epufs] })).toThrow(
      "service pgmesh.epufs.v1.EpufsService is registered twice",
    );
  });

  it("refuses a public method the service does not have", () => {
    const epufs = serviceOf({ service: EpufsService, impl: {}, publicMethods: ["GetFiles"] });
    expect(() => compileServerOptions({ ...base, services: [epufs] })).toThrow(
      'public method "GetFiles" is not a method of pgmesh.epufs.v1.EpufsService',
    );
  });

  it("refuses an HTTP/2 window below the protocol default or above its maximum", () => {
    expect(() => compileServerOptions({ ...base, http2WindowBytes: 1024 })).toThrow(
      "server option http2WindowBytes must be an integer in 65535..2147483647, got 1024",
    );
    expect(() => compileServerOptions({ ...base, http2WindowBytes: 2 ** 31 })).toThrow("got 2147483648");
  });

  it("refuses a zero message limit", () => {
    expect(() => compileServerOptions({ ...base, readMaxBytes: 0 })).toThrow("server option readMaxBytes must be a positive integer, got 0");
  });
});
