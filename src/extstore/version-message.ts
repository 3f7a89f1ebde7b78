import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ExtensionVersionSchema,
  GrantSchema,
  ReviewState,
  Visibility,
  type ExtensionVersion,
  type Grant,
} from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import type { CatalogEntry, StoredGrant } from "./stored-records.js";

/** The wire form of a catalog entry. */
export function toExtensionVersion(entry: CatalogEntry): ExtensionVersion {
  const { version: v, review } = entry;
  return create(ExtensionVersionSchema, {
    name: v.name,
    version: v.version,
    sha256: v.sha256,
    pgMajors: [...v.pg_majors],
    license: v.license,
    visibility: v.visibility === "public" ? Visibility.PUBLIC : Visibility.PRIVATE,
    needsSharedPreload: v.needs_shared_preload,
    needsSessionPreload: v.needs_session_preload,
    libraries: [...v.libraries],
    controlFiles: [...v.control_files],
    size: BigInt(v.size),
    reviewState: reviewStateOf(entry),
    reviewReason: review?.reason ?? "",
    publishTime: timestampFromDate(new Date(v.publish_time)),
    description: v.description,
  });
}

export function reviewStateOf(entry: CatalogEntry): ReviewState {
  switch (entry.review?.state) {
    case "approved":
      return ReviewState.APPROVED;
    case "rejected":
      return ReviewState.REJECTED;
    default:
      return ReviewState.PENDING;
  }
}

export function toGrant(grant: StoredGrant): Grant {
  return create(GrantSchema, {
    name: grant.name,
    tenantId: grant.tenant_id,
    grantTime: timestampFromDate(new Date(grant.grant_time)),
  });
}
