import { createContextKey } from "@connectrpc/connect";

/** The caller's address ("host:port"), set for every call. */
export const peerKey = createContextKey<string>("unknown", { description: "pgmesh call peer" });
