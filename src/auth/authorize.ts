import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Claims, Scope } from "./claims.js";
import { authModeKey, claimsKey } from "./claims-context.js";

/*
 * Authorization rules shared by every service (DESIGN.md "Auth"):
 * - scopes: admin ⊇ control_plane. A compute token is separate: it covers
 *   exactly its own tenant/timeline/endpoint, nothing else.
 * - a control_plane or admin token may act on any tenant's resources.
 * - on a server run with --insecure-no-auth there are no claims, and every
 *   check here passes.
 */

/** What scopes a token of each scope satisfies. */
const satisfies: Readonly<Record<Scope, readonly Scope[]>> = {
  compute: ["compute"],
  control_plane: ["control_plane"],
  admin: ["admin", "control_plane"],
};

/**
 * The verified claims of the call, or undefined when the server runs without
 * auth. Throws UNAUTHENTICATED when the server verifies tokens but the call
 * has none (a method declared public that still needs a token).
 */
export function requireClaims(ctx: Pick<HandlerContext, "values">): Claims | undefined {
  const claims = ctx.values.get(claimsKey);
  if (claims === undefined && ctx.values.get(authModeKey) === "verified") {
    throw new ConnectError("this call needs a bearer token: send 'authorization: Bearer <jwt>'", Code.Unauthenticated);
  }
  return claims;
}

/** PERMISSION_DENIED unless the token's scope satisfies one of `allowed` (admin satisfies control_plane). */
export function requireScope(claims: Claims | undefined, ...allowed: Scope[]): void {
  if (claims === undefined) return;
  if (satisfies[claims.scope].some((s) => allowed.includes(s))) return;
  throw new ConnectError(
    `a ${claims.scope} token may not do this; it needs scope ${allowed.join(" or ")}`,
    Code.PermissionDenied,
  );
}

/** The resource a call acts on; fields left undefined are not checked. */
export interface ResourceRef {
  readonly tenantId: string;
  readonly timelineId?: string;
  readonly endpointId?: string;
}

/**
 * PERMISSION_DENIED unless the token covers the resource: control_plane and
 * admin tokens cover every resource, a compute token only the tenant,
 * timeline and endpoint it names.
 */
export function requireResourceAccess(claims: Claims | undefined, ref: ResourceRef): void {
  if (claims === undefined || claims.scope !== "compute") return;
  checkField("tenant_id", claims.tenantId, ref.tenantId);
  if (ref.timelineId !== undefined) checkField("timeline_id", claims.timelineId, ref.timelineId);
  if (ref.endpointId !== undefined) checkField("endpoint_id", claims.endpointId, ref.endpointId);
}

/** requireResourceAccess for one endpoint: all three ids must match a compute token. */
export function requireEndpointAccess(
  claims: Claims | undefined,
  ref: { readonly tenantId: string; readonly timelineId: string; readonly endpointId: string },
): void {
  requireResourceAccess(claims, ref);
}

/** requireResourceAccess for a whole tenant: a compute token must name that tenant. */
export function requireTenantAccess(claims: Claims | undefined, tenantId: string): void {
  requireResourceAccess(claims, { tenantId });
}

function checkField(claim: string, granted: string | undefined, wanted: string): void {
  if (granted === undefined) {
    throw new ConnectError(`the compute token has no ${claim} claim, so it covers no ${claim} "${wanted}"`, Code.PermissionDenied);
  }
  if (granted !== wanted) {
    throw new ConnectError(
      `the compute token is for ${claim} "${granted}", not ${claim} "${wanted}"`,
      Code.PermissionDenied,
    );
  }
}
