/** What a token may do; see DESIGN.md "Auth". */
export type Scope = "compute" | "control_plane" | "admin";

export const scopes: readonly Scope[] = ["compute", "control_plane", "admin"];

/**
 * The verified claims of a bearer JWT. On the wire they are `scope`,
 * `tenant_id`, `timeline_id`, `endpoint_id`, `exp`.
 */
export interface Claims {
  readonly scope: Scope;
  readonly tenantId?: string;
  readonly timelineId?: string;
  readonly endpointId?: string;
  readonly subject?: string;
  readonly expiresAt: Date;
}
