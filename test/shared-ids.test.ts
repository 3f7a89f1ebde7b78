import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { SpecError } from "../src/computectl/index.js";
import { checkExtensionName, checkResourceId } from "../src/ids/index.js";
import { spec } from "./computectl-fixtures.js";

function codeOf(call: () => unknown): Code | undefined {
  try {
    call();
  } catch (err) {
    return ConnectError.from(err).code;
  }
  return undefined;
}

describe("the shared identifier rules", () => {
  it("accept Neon's 32-hex tenant and timeline ids and ep-… endpoint ids", () => {
    for (const id of ["b0554b632bd4d547a63b86c3630317e8", "ep-cool-darkness-123456", "tenant_a"]) expect(checkResourceId("tenant_id", id)).toBe(id);
  });

  it("refuse acme.prod, an empty id and one over 64 characters with INVALID_ARGUMENT naming the field", () => {
    expect(() => checkResourceId("tenant_id", "acme.prod")).toThrow('tenant_id "acme.prod" is not valid: use 1 to 64 letters, digits, "_" or "-"');
    expect(() => checkResourceId("timeline_id", "")).toThrow("timeline_id is missing");
    expect(codeOf(() => checkResourceId("endpoint_id", "e".repeat(65)))).toBe(Code.InvalidArgument);
  });

  it("hold for a compute spec's tenant_id as for every service", () => {
    expect(() => spec({ tenant_id: "acme.prod" })).toThrow(SpecError);
    expect(() => spec({ tenant_id: "acme.prod" })).toThrow(/tenant_id: "acme\.prod" is not valid/);
  });

  it("accept library names with a version (libpgrouting-3.4) and refuse a name with a path or a script separator", () => {
    expect(checkExtensionName("libpgrouting-3.4")).toBe("libpgrouting-3.4");
    expect(codeOf(() => checkExtensionName("../evil"))).toBe(Code.InvalidArgument);
    expect(() => checkExtensionName("a--b")).toThrow(/may not contain "--"/);
  });
});
