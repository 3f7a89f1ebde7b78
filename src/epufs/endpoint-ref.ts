import { Code, ConnectError } from "@connectrpc/connect";
import { checkResourceId } from "../ids/index.js";

/** One endpoint, with validated ids. */
export interface EndpointIds {
  readonly tenantId: string;
  readonly timelineId: string;
  readonly endpointId: string;
}

/** INVALID_ARGUMENT unless the ref is present and all three ids are valid. */
export function validateEndpointRef(
  ref: { readonly tenantId: string; readonly timelineId: string; readonly endpointId: string } | undefined,
): EndpointIds {
  if (ref === undefined) throw new ConnectError("endpoint is missing", Code.InvalidArgument);
  return {
    tenantId: checkResourceId("tenant_id", ref.tenantId),
    timelineId: checkResourceId("timeline_id", ref.timelineId),
    endpointId: checkResourceId("endpoint_id", ref.endpointId),
  };
}

/** "tenant/timeline/endpoint", for messages. */
export function describeEndpoint(ids: EndpointIds): string {
  return `${ids.tenantId}/${ids.timelineId}/${ids.endpointId}`;
}
