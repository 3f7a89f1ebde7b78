import type { BlobInfo, BlobStore } from "./blob-store.js";

/** Every object under `prefix`, in key order, fetched page by page. */
export async function* listAllPages(store: Pick<BlobStore, "list">, prefix: string): AsyncGenerator<BlobInfo> {
  let pageToken: string | undefined;
  do {
    const page = await store.list(prefix, pageToken === undefined ? {} : { pageToken });
    yield* page.items;
    pageToken = page.nextPageToken;
  } while (pageToken !== undefined);
}
