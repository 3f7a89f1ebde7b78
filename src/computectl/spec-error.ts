import { Code } from "@connectrpc/connect";
import { ComputeCtlError } from "./compute-ctl-error.js";

/**
 * A compute spec that does not parse or validate. `field` is the JSON path of
 * the offending value, e.g. `cluster.roles[2].name`.
 */
export class SpecError extends ComputeCtlError {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`invalid compute spec: ${field ? `${field}: ` : ""}${problem}`, Code.InvalidArgument);
  }
}
