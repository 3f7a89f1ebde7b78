import { describe, expect, it } from "vitest";
import { computeHookSettings, InvalidExtensionNameError, libraryNameOf, parseLibraryList } from "../src/computectl/extensions/index.js";

describe("computeHookSettings", () => {
  it("puts pgmesh_compute_hook first in shared_preload_libraries, once", () => {
    expect(
      computeHookSettings({
        computeCtlAddr: "127.0.0.1:7103",
        sharedPreloadLibraries: ["pg_stat_statements", "$libdir/pgmesh_compute_hook", "hypopg.so", "pg_stat_statements"],
      }),
    ).toEqual({
      shared_preload_libraries: "pgmesh_compute_hook,pg_stat_statements,hypopg",
      "pgmesh.compute_ctl_addr": "127.0.0.1:7103",
      "pgmesh.extension_timeout_ms": "30000",
    });
  });

  it("takes the timeout and an IPv6 address", () => {
    expect(computeHookSettings({ computeCtlAddr: "[::1]:7103", extensionTimeoutMs: 5000 })).toMatchObject({
      shared_preload_libraries: "pgmesh_compute_hook",
      "pgmesh.compute_ctl_addr": "[::1]:7103",
      "pgmesh.extension_timeout_ms": "5000",
    });
  });

  it("refuses an address without a port and a timeout that is not a positive integer", () => {
    expect(() => computeHookSettings({ computeCtlAddr: "localhost" })).toThrow('computeCtlAddr "localhost" is not host:port');
    expect(() => computeHookSettings({ computeCtlAddr: "127.0.0.1:7103", extensionTimeoutMs: 0 })).toThrow(
      "extensionTimeoutMs must be a positive integer, got 0",
    );
  });
});

describe("library names", () => {
  it("strips $libdir/ and .so", () => {
    expect(["$libdir/hypopg.so", "hypopg.so", "hypopg", " hypopg "].map(libraryNameOf)).toEqual(["hypopg", "hypopg", "hypopg", "hypopg"]);
  });

  it("splits a preload setting the way postgresql.conf writes it", () => {
    expect(parseLibraryList("pg_stat_statements, 'auto_explain',$libdir/hypopg , ")).toEqual(["pg_stat_statements", "auto_explain", "hypopg"]);
  });

  it("refuses a library given by another path", () => {
    expect(() => libraryNameOf("/tmp/evil.so")).toThrow(InvalidExtensionNameError);
    expect(() => libraryNameOf("$libdir/../evil")).toThrow('library name "../evil" is not valid');
  });
});
