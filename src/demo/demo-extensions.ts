import { readdir } from "node:fs/promises";
import path from "node:path";
import type { Client } from "@connectrpc/connect";
import {
  ExtensionStoreService,
  ReviewDecision,
  ReviewState,
  Visibility,
} from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import {
  packExtension,
  packSourceFromDeb,
  packSourceFromPgConfig,
  publishBundleFile,
  type PackSource,
} from "../extstore/index.js";

/** Contrib extensions the demo publishes beside hypopg. */
export const demoContribExtensions = ["hstore", "citext", "pg_trgm"] as const;

export interface PublishedExtension {
  readonly name: string;
  readonly version: string;
  readonly sha256: string;
  readonly alreadyExisted: boolean;
}

/** Finds the hypopg package that scripts/setup.sh downloads into <dir>/debs. */
export async function findHypopgDeb(pgmeshDir: string): Promise<string> {
  const debs = path.join(pgmeshDir, "debs");
  const names = await readdir(debs).catch(() => [] as string[]);
  const deb = names.find((name) => name.startsWith("postgresql-15-hypopg_") && name.endsWith(".deb"));
  if (deb) return path.join(debs, deb);
  throw new Error(`no postgresql-15-hypopg .deb under ${pgmeshDir}/debs; run scripts/setup.sh (it runs apt-get download postgresql-15-hypopg there)`);
}

/**
 * Packs hypopg from its Debian package and a few contrib extensions from the
 * installed Postgres, publishes each (admin) and approves it.
 */
export async function publishDemoExtensions(options: {
  readonly store: Client<typeof ExtensionStoreService>;
  readonly hypopgDeb: string;
  readonly pgConfig: string;
  readonly outDir: string;
}): Promise<PublishedExtension[]> {
  const sources: Array<() => Promise<PackSource>> = [
    () => packSourceFromDeb(options.hypopgDeb, 15),
    ...demoContribExtensions.map((name) => () => packSourceFromPgConfig(name, options.pgConfig)),
  ];
  const published: PublishedExtension[] = [];
  for (const openSource of sources) {
    const source = await openSource();
    const bundle = await packExtension(source, path.join(options.outDir, `${source.name}.tar`));
    const response = await publishBundleFile(options.store, bundle, {
      pgMajors: [15],
      visibility: Visibility.PUBLIC,
      license: bundle.name === "hypopg" ? "PostgreSQL" : "PostgreSQL (contrib)",
      description: `${bundle.name} ${bundle.version}, packed by the pgmesh demo`,
    });
    if (response.extension?.reviewState !== ReviewState.APPROVED) {
      await options.store.reviewExtension({
        name: bundle.name,
        sha256: bundle.sha256,
        decision: ReviewDecision.APPROVE,
        reason: "demo",
      });
    }
    published.push({ name: bundle.name, version: bundle.version, sha256: bundle.sha256, alreadyExisted: response.alreadyExisted });
  }
  return published;
}
