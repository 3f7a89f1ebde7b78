import { Code, ConnectError } from "@connectrpc/connect";
import { quoteInput } from "../errors/index.js";

/** One endpoint, with validated ids. */
export interface EndpointIds {
  readonly tenantId: string;
  readonly timelineId: string;
  readonly endpointId: string;
}

/** Ids are 1 to 64 of [A-Za-z0-9_-]: Neon's 32-hex tenant/timeline ids and "ep-..." endpoint ids fit. */
const idPattern = /^[A-Za-z0-9_-]{1,64}$/;

/** INVALID_ARGUMENT unless `value` is a valid id; `field` is its wire name, e.g. "tenant_id". */
export function validateId(field: string, value: string): string {
  if (!idPattern.test(value)) {
    throw new ConnectError(
      value === ""
        ? `${field} is missing`
        : `${field} ${quoteInput(value)} is not valid: use 1 to 64 letters, digits, "_" or "-"`,
      Code.InvalidArgument,
    );
  }
  return value;
}

/** INVALID_ARGUMENT unless the ref is present and all three ids are valid. */
export function validateEndpointRef(
  ref: { readonly tenantId: string; readonly timelineId: string; readonly endpointId: string } | undefined,
): EndpointIds {
  if (ref === undefined) throw new ConnectError("endpoint is missing", Code.InvalidArgument);
  return {
    tenantId: validateId("tenant_id", ref.tenantId),
    timelineId: validateId("timeline_id", ref.timelineId),
    endpointId: validateId("endpoint_id", ref.endpointId),
  };
}

/** "tenant/timeline/endpoint", for messages. */
export function describeEndpoint(ids: EndpointIds): string {
  return `${ids.tenantId}/${ids.timelineId}/${ids.endpointId}`;
}
